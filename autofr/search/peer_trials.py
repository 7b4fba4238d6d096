"""Peers as trials of a study: other libraries' caches, evaluated in the study's own protocol.

Every peer that runs on the model (:func:`autofr.peers.available_peers`: diffusers' caches, cache-dit;
each at its documented default and over a sweep of its main knob) becomes one finished trial of the
study, origin ``peer``, so it stands on the same axes as every schedule:

* **quality**: the study's samples (the same seeds, initial noise and labels as every trial) drawn with
  the peer's cache enabled, scored by the study's own :class:`~autofr.search.objective.Objective`
  (every measure; with adaptive fidelity, more samples while the estimate is near the target);
* **speed**: measured, since a dynamic cache has no MAC prediction: all peers are timed on one batch in
  one interleaved run against full compute (:func:`~autofr.search.confirm.interleaved_speedups`,
  ``timing_repeats`` repeats, at least one); a peer whose timing fails is timed again on its own, so
  it cannot lose the others theirs. The speedup is the trial's first value, where a schedule has its
  predicted speedup.

A peer already in the study is not evaluated again (a resumed run). A method that cannot run on the
model is logged and recorded in the study (``peers_skipped``, with its reason); on a UNet none runs and
the DeepCache-style references of the warm start stand in. One peer that fails (NaN samples, an error
inside the library) is logged and the others go on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import optuna

from autofr.evaluation import EvalProtocol, generate
from autofr.peers import Peer, available_peers, peer_enabled, peer_key
from autofr.search.confirm import Timing, interleaved_speedups, timed_generation
from autofr.search.objective import Objective
from autofr.search.records import StudyInfo, StudyRecords, TrialRecord, TrialResult, add_peer_trial

logger = logging.getLogger(__name__)


@dataclass
class PeerStage:
    """What the peer stage did: the peers it added, those already in the study, and why others are missing."""

    added: list[TrialRecord] = field(default_factory=list)
    already: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: how many peers were evaluated, and why the others were not (methods with the same
        reason named together)."""
        parts = [f"{len(self.added)} peer settings evaluated"]
        if self.already:
            parts.append(f"{self.already} already in the study")
        by_reason: dict[str, list[str]] = {}
        for method, reason in self.skipped.items():
            by_reason.setdefault(reason, []).append(method)
        if by_reason:
            parts.append(
                "skipped: " + "; ".join(f"{', '.join(methods)} ({reason})" for reason, methods in by_reason.items())
            )
        if not self.added and not self.already and self.skipped:
            parts.append("the DeepCache-style references stand in")
        if self.failed:
            parts.append("failed: " + "; ".join(f"{label} ({reason})" for label, reason in self.failed.items()))
        return ", ".join(parts)


def evaluate_peer(
    pipe,
    protocol: EvalProtocol,
    objective: Objective,
    peer: Peer,
    known: dict[int, TrialRecord],
    timing: Timing | None,
) -> tuple[TrialResult, tuple[float | None, float]]:
    """``(result, values)`` of one peer: its samples under ``protocol`` scored by ``objective``, with
    its measured speed ``timing`` (None: timed elsewhere, the speed is filled in later)."""
    began = time.perf_counter()
    result = TrialResult(
        schedule=None,
        num_inference_steps=protocol.num_inference_steps,
        predicted_speedup=None,
        measured_speedup=timing.speedup if timing is not None else None,
        peer=peer.describe(),
    )
    with peer_enabled(pipe, peer):
        samples = generate(pipe, protocol)
        objective.score(result, samples, None, known)
    result.sampling_seconds, result.trial_seconds = samples.seconds, time.perf_counter() - began
    return result, (result.measured_speedup, objective.constrain(result))


def time_peers(
    pipe, protocol: EvalProtocol, peers: list[Peer], repeats: int = 3
) -> tuple[dict[str, Timing], dict[str, str]]:
    """``(timings by peer key, failures by peer label)``: every peer on one batch in one interleaved run;
    if that run fails, each peer on its own, so one failing peer keeps the others' timings."""
    timing = protocol.replace(num_samples=min(protocol.num_samples, protocol.batch_size))
    repeats = max(1, int(repeats))
    try:
        by_key = interleaved_speedups(pipe, timing, {peer.key(): peer for peer in peers}, repeats=repeats)
        return by_key, {}
    except Exception as error:
        logger.warning("timing the peers together failed (%s); timing each on its own", error)
    timings, failed = {}, {}
    for peer in peers:
        try:
            timings.update(interleaved_speedups(pipe, timing, {peer.key(): peer}, repeats=repeats))
        except Exception as error:
            failed[peer.label] = " ".join(str(error).split())[:300]
    return timings, failed


def evaluate_peers(
    study: optuna.Study,
    pipe,
    protocol: EvalProtocol,
    objective: Objective,
    methods,
    timing_repeats: int = 3,
    progress=None,
    on_added=None,
) -> PeerStage:
    """Evaluate every peer of ``methods`` (``search.peers``) that runs on ``pipe`` and is not in
    ``study`` yet, and add each as a finished trial; ``on_added(record)`` after each one."""
    stage = PeerStage()
    peers, stage.skipped = available_peers(pipe, protocol, methods)
    StudyInfo.update(study, peers_skipped=stage.skipped)
    if not peers:
        if stage.skipped:
            logger.info(
                "no peer runs on this model (%s); the DeepCache-style references stand in",
                "; ".join(f"{m}: {r}" for m, r in stage.skipped.items()),
            )
        return stage
    records = StudyRecords.load(study)
    done = {peer_key(t.peer) for t in records.completed() if t.is_peer and t.peer}
    known = {t.number: t for t in records.completed()}
    todo = [peer for peer in peers if peer.key() not in done]
    stage.already = len(peers) - len(todo)
    if not todo:
        return stage
    timed_generation(
        pipe, protocol.replace(num_samples=1, batch_size=1), {"warm-up": None}, repeats=1
    )  # one-off costs
    timings, stage.failed = time_peers(pipe, protocol, todo, timing_repeats)
    for peer in progress(todo, "peers") if progress else todo:
        if peer.key() not in timings:
            logger.warning("peer %s failed: %s", peer.label, stage.failed.get(peer.label))
            continue
        try:
            result, values = evaluate_peer(pipe, protocol, objective, peer, known, timings[peer.key()])
        except Exception as error:  # one peer failing must not lose the others
            logger.warning("peer %s failed: %s", peer.label, error)
            stage.failed[peer.label] = " ".join(str(error).split())[:300]
            continue
        add_peer_trial(study, peer.label, result, values)
        record = _added(study, peer)
        stage.added.append(record)
        logger.info("peer %s: %.2fx measured, quality %.4g", peer.label, values[0], values[1])
        if on_added is not None:
            on_added(record)
    return stage


def _added(study: optuna.Study, peer: Peer) -> TrialRecord:
    """The trial just added for ``peer`` (the newest trial holding it)."""
    for frozen in reversed(study.get_trials(deepcopy=False)):
        record = TrialRecord.from_frozen(frozen)
        if record.is_peer and record.peer and peer_key(record.peer) == peer.key():
            return record
    raise LookupError(f"the trial of peer {peer.label} is not in the study")
