"""The stages of a study after its trials, as work items that every worker takes part in.

Each stage is a kind of :class:`~autofr.execution.work.WorkItem` in the study's own storage
(claimed once, heartbeats, retried when a worker dies; see :mod:`autofr.execution.work`). An item
waits only for what it needs, so a worker whose trials are done starts on what is ready while the
others finish theirs:

======================================  ============================================  ==========================
item                                    what it does                                  waits for
======================================  ============================================  ==========================
``fid.reference:<seed>:<first>``        full compute's FID features of one slice of   nothing
                                        samples at one seed
``peers.plan``                          which peers run on the model; adds the next   nothing
``peers.score:<peer>``                  a peer's samples scored by the study's         peers.plan
                                        objective
``peers.time`` (quiet)                  every peer timed in one interleaved run        peers.plan, the trials
                                        against full compute
``peers.record``                        the peers added as trials (origin ``peer``)    peers.*, the trials
                                        with their measured speed
``confirm.plan``                        the candidates that decide the answer, sized  the trials, peers.plan,
                                        to the device-hour budget; adds the next      peers.record
``fid.slice:<trial>:<seed>:<first>``    a candidate's FID features of one slice        confirm.plan
``fid.merge:<trial>``                   the slices' features merged (never sampled     fid.reference, fid.slice
                                        again) into FID-N at every seed
``timing`` (quiet)                      the candidates and every earlier confirmed     confirm.plan
                                        point in one interleaved run on a quiet
                                        device, which is recorded with the study
``confirm.record``                      FID and measured speed stored together as      fid.merge, timing
                                        each point's confirmation
======================================  ============================================  ==========================

The items belong to a *round*: the settings that decide what is confirmed (the trial budget, the
confirmation settings, the budget in device-hours). Re-running the same command resumes its round; a
larger budget starts a new round that confirms what the old one did not.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import logging
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from autofr.errors import AutoFRError
from autofr.execution.work import StageProgress, WorkItem, WorkQueue
from autofr.peers import Peer, available_peers, peer_key
from autofr.schedule import ReuseSchedule
from autofr.search.confirm import (
    Timing,
    _computes_everything,
    apply_timing,
    candidate_of,
    confirm_candidates,
    deciding_order,
    record_proxy_fidelity,
    timed_generation,
)
from autofr.search.peer_trials import evaluate_peer, time_peers
from autofr.search.plan import fid_slice_size
from autofr.search.records import (
    StudyInfo,
    TrialRecord,
    TrialResult,
    add_peer_trial,
    peer_trial_count,
    save_confirmation,
)

if TYPE_CHECKING:
    from autofr.search.study import AutoFRStudy

logger = logging.getLogger(__name__)

TRIALS = "trials"  # the trial stage: ready when no trial runs any more
PEERS_PLAN, PEERS_SCORE, PEERS_TIME, PEERS_RECORD = "peers.plan", "peers.score", "peers.time", "peers.record"
CONFIRM_PLAN, FID_REFERENCE, FID_SLICE, FID_MERGE = "confirm.plan", "fid.reference", "fid.slice", "fid.merge"
TIMING, CONFIRM_RECORD = "timing", "confirm.record"


def encode_features(features) -> str:
    """(N, D) float64 features as text for an item's result (compressed ``.npy``, base64)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=np.asarray(features, dtype=np.float64))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_features(text: str) -> np.ndarray:
    with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as data:
        return data["features"]


def slices(n: int, size: int) -> list[tuple[int, int]]:
    """``[first, stop)`` sample ranges of at most ``size`` samples covering ``0 .. n - 1``."""
    return [(first, min(first + size, n)) for first in range(0, n, size)]


class StudyStages:
    """The items of one :class:`~autofr.search.study.AutoFRStudy` after its trials, run by this worker
    together with every other worker of the study."""

    def __init__(self, study: AutoFRStudy, queue: WorkQueue, show: Callable[[str], None] = print) -> None:
        self.study = study
        self.queue = queue
        self.show = show
        self.config = study.config
        self._confirmer = None
        self.round = self._round()

    # ------------------------------------------------------------------ round, plan items, loop
    def _round(self) -> str:
        """A short id of the settings that decide what the stages do (see the module docstring)."""
        search, quality = self.config.search, self.config.quality
        settings = {
            "n_trials": search.n_trials,
            "peers": list(search.peer_methods),
            "confirm": [search.confirm_top_k, search.confirm_max, search.confirm_layers, list(search.confirm_proxies)],
            "fid": [quality.fid_samples, search.fid_seeds, search.fid_slice],
            "timing": [search.measure_speed, search.timing_repeats],
            "budget": search.max_device_hours,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]

    def key(self, name: str) -> str:
        return f"{self.round}/{name}"

    def seed(self) -> None:
        """Add this round's first items (any worker may; a key is only ever added and run once)."""
        confirmer = self.confirmer
        n = confirmer.fid_protocol.num_samples
        references = [
            WorkItem(
                self.key(f"{FID_REFERENCE}:{seed}:{first}"),
                FID_REFERENCE,
                spec={"seed": seed, "first": first, "stop": stop},
            )
            for seed in confirmer.seeds
            for first, stop in slices(n, self.slice_size())
        ]
        self.queue.add(
            [
                WorkItem(self.key(PEERS_PLAN), PEERS_PLAN),
                *references,
                WorkItem(self.key(CONFIRM_PLAN), CONFIRM_PLAN, after=(TRIALS, PEERS_PLAN, PEERS_RECORD)),
            ]
        )

    def run(self) -> int:
        """Take part in every stage until all are done; returns how many items this worker ran."""
        self.seed()
        return self.queue.run(self.execute, ready=self._ready, on_done=self._report)

    def _ready(self, stage: str) -> bool:
        if stage != TRIALS:
            return True
        optuna_study = self.study.study
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(optuna_study)  # a dead worker's trial must not hold the stages
        if optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            return False
        # between two trials of a worker nothing runs: the budget must be complete too, unless this
        # worker stopped early (search.timeout_s, the device-hour budget), which ends the trials for all
        complete = len(optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        stopped = self.study.trials_summary is not None and (
            self.study.trials_summary.timed_out or self.study.trials_summary.stopped
        )
        return stopped or complete - peer_trial_count(optuna_study) >= self.config.search.n_trials

    def _report(self, item: WorkItem, progress: list[StageProgress]) -> None:
        for row in progress:
            if row.stage == item.stage:
                self.show(row.line())
                self.study.log_progress(row)

    def execute(self, item: WorkItem) -> dict[str, Any]:
        handler = {
            PEERS_PLAN: self._plan_peers,
            PEERS_SCORE: self._score_peer,
            PEERS_TIME: self._time_peers,
            PEERS_RECORD: self._record_peers,
            CONFIRM_PLAN: self._plan_confirmation,
            FID_REFERENCE: self._reference_slice,
            FID_SLICE: self._candidate_slice,
            FID_MERGE: self._merge,
            TIMING: self._time_candidates,
            CONFIRM_RECORD: self._record_confirmations,
        }[item.stage]
        return handler(item)

    @property
    def confirmer(self):
        if self._confirmer is None:
            self._confirmer = self.study.confirmer()
        return self._confirmer

    # ------------------------------------------------------------------ peers
    def _plan_peers(self, item: WorkItem) -> dict[str, Any]:
        methods = self.config.search.peer_methods
        if not methods:
            return {"peers": 0}
        study, model = self.study, self.study.model
        peers, skipped = available_peers(model.pipe, study.protocol, methods)
        StudyInfo.update(study.study, peers_skipped=skipped)
        done = {peer_key(t.peer) for t in study.records().completed() if t.is_peer and t.peer}
        todo = [peer for peer in peers if peer.key() not in done]
        if todo:
            described = [peer.describe() for peer in todo]
            self.queue.add(
                [
                    WorkItem(self.key(f"{PEERS_SCORE}:{peer.key()}"), PEERS_SCORE, after=(PEERS_PLAN,), spec=d)
                    for peer, d in zip(todo, described)
                ]
                + [
                    WorkItem(
                        self.key(PEERS_TIME),
                        PEERS_TIME,
                        after=(PEERS_PLAN, TRIALS),
                        quiet=True,
                        spec={"peers": described},
                    ),
                    WorkItem(self.key(PEERS_RECORD), PEERS_RECORD, after=(PEERS_SCORE, PEERS_TIME, TRIALS)),
                ]
            )
        else:
            self.queue.add([WorkItem(self.key(PEERS_RECORD), PEERS_RECORD, after=(PEERS_PLAN,))])
        return {"peers": len(todo), "already": len(peers) - len(todo), "skipped": skipped}

    def _score_peer(self, item: WorkItem) -> dict[str, Any]:
        """The peer's quality on the study's samples (its speed comes from the timing run)."""
        study = self.study
        peer = Peer.from_description(item.spec)
        known = {t.number: t for t in study.records().completed()}
        objective = study.objective_for_stages()
        result, values = evaluate_peer(study.model.pipe, study.protocol, objective, peer, known, timing=None)
        return {"attrs": result.attrs(), "quality": values[1]}

    def _time_peers(self, item: WorkItem) -> dict[str, Any]:
        pipe, protocol = self.study.model.pipe, self.study.protocol
        peers = [Peer.from_description(d) for d in item.spec["peers"]]
        timed_generation(pipe, protocol.replace(num_samples=1, batch_size=1), {"warm-up": None}, repeats=1)
        timings, failed = time_peers(pipe, protocol, peers, self.config.search.timing_repeats)
        return {
            "timings": {key: dataclasses.asdict(timing) for key, timing in timings.items()},
            "failed": failed,
            "device": self.queue.worker.device,
        }

    def _record_peers(self, item: WorkItem) -> dict[str, Any]:
        """Every scored and timed peer as a trial of the study (each once, also after a retry)."""
        study = self.study
        timings = (self.queue.result(self.key(PEERS_TIME)) or {}).get("timings") or {}
        present = {peer_key(t.peer) for t in study.records().completed() if t.is_peer and t.peer}
        added, missing = [], []
        for key, scored in self.queue.results(PEERS_SCORE).items():
            if not key.startswith(self.key("")):
                continue
            result = TrialResult(**scored["attrs"])
            peer = Peer.from_description(result.peer)
            timing = timings.get(peer.key())
            if peer.key() in present:
                continue
            if timing is None:
                missing.append(peer.label)
                continue
            result.measured_speedup = float(timing["speedup"])
            add_peer_trial(study.study, peer.label, result, (result.measured_speedup, scored["quality"]))
            added.append(peer.label)
            logger.info(
                "peer %s: %.2fx measured, quality %.4g", peer.label, result.measured_speedup, scored["quality"]
            )
        for record in study.records().completed():
            if record.is_peer and record.label in added:
                study.log_trial(record)
        if missing:
            logger.warning("peers without a measured speed, left out: %s", ", ".join(missing))
        return {"added": added, "untimed": missing}

    # ------------------------------------------------------------------ confirmation
    def _plan_confirmation(self, item: WorkItem) -> dict[str, Any]:
        study, search = self.study, self.config.search
        records = study.records()
        candidates = confirm_candidates(
            records,
            search.confirm_top_k,
            None,
            layers=search.confirm_layers,
            proxies=study.measures.confirm_proxies,
            order=deciding_order,
            near_target=True,
        )
        wanted = candidates[: search.confirm_max] if search.confirm_max is not None else candidates
        chosen = wanted
        if study.budget is not None:
            spent = study.spent_seconds(self.queue)
            chosen = wanted[: study.budget.confirmations(self.config, spent, len(wanted))]
            if len(chosen) < len(wanted):
                study.record_cut(
                    f"confirmation: {len(chosen)} of {len(wanted)} candidates, the rest of the budget after "
                    f"{spent / 3600:.3f} device-hours"
                )
        confirmer = self.confirmer
        n, size = confirmer.fid_protocol.num_samples, self.slice_size()
        items = []
        for trial in chosen:
            whole = _is_full(trial, confirmer)  # its slices are full compute's references
            for seed in confirmer.seeds:
                if whole or seed in confirmer.cached_seeds(trial) or confirmer.takes_from_trial(trial, seed):
                    continue
                for first, stop in slices(n, size):
                    items.append(
                        WorkItem(
                            self.key(f"{FID_SLICE}:{trial.number}:{seed}:{first}"),
                            FID_SLICE,
                            after=(CONFIRM_PLAN,),
                            spec={"trial": trial.number, "seed": seed, "first": first, "stop": stop},
                        )
                    )
        merges = [
            WorkItem(
                self.key(f"{FID_MERGE}:{trial.number}"),
                FID_MERGE,
                after=(FID_REFERENCE, FID_SLICE),
                spec={"trial": trial.number},
            )
            for trial in chosen
        ]
        numbers = [t.number for t in chosen]
        timed = numbers + [t.number for t in records.confirmed() if t.number not in numbers]
        timing = (
            [WorkItem(self.key(TIMING), TIMING, after=(CONFIRM_PLAN,), quiet=True, spec={"trials": timed})]
            if search.measure_speed and search.timing_repeats > 0 and chosen
            else []
        )
        record = WorkItem(self.key(CONFIRM_RECORD), CONFIRM_RECORD, after=(FID_MERGE, TIMING), spec={"trials": timed})
        self.queue.add(items + merges + timing + [record])
        return {"candidates": numbers, "of": len(candidates), "slices": len(items)}

    def slice_size(self) -> int:
        """Samples per FID item (:func:`~autofr.search.plan.fid_slice_size`)."""
        quality = self.config.quality
        return fid_slice_size(quality.fid_samples, quality.batch_size, self.config.search.fid_slice)

    def _reference_slice(self, item: WorkItem) -> dict[str, Any]:
        spec = item.spec
        features = self.confirmer.slice_features(None, spec["seed"], spec["first"], spec["stop"])
        return {"features": encode_features(features)}

    def _candidate_slice(self, item: WorkItem) -> dict[str, Any]:
        spec = item.spec
        trial = self._trial(spec["trial"])
        features = self.confirmer.slice_features(candidate_of(trial), spec["seed"], spec["first"], spec["stop"])
        return {"features": encode_features(features)}

    def _features(self, name: str, seed: int) -> np.ndarray | None:
        """The features of every slice of ``name`` (a reference, or a trial's slices) at ``seed``, in
        sample order; None when a slice is missing (it failed beyond its retries)."""
        n, size = self.confirmer.fid_protocol.num_samples, self.slice_size()
        parts = []
        for first, _ in slices(n, size):
            result = self.queue.result(self.key(f"{name}:{seed}:{first}"))
            if result is None:
                return None
            parts.append(decode_features(result["features"]))
        return np.concatenate(parts)

    def _merge(self, item: WorkItem) -> dict[str, Any]:
        study, confirmer = self.study, self.confirmer
        trial = self._trial(item.spec["trial"])
        full = {seed: self._features(FID_REFERENCE, seed) for seed in confirmer.seeds}
        if any(f is None for f in full.values()):
            raise AutoFRError("full compute's FID features are missing (a reference slice failed)")
        whole = _is_full(trial, confirmer)
        per_seed = {}
        for seed in confirmer.seeds:
            scores = None if whole else confirmer.known_scores(trial, seed, full_features=full[seed])
            if scores is None:
                features = full[seed] if whole else self._features(f"{FID_SLICE}:{trial.number}", seed)
                if features is None:
                    raise AutoFRError(f"trial {trial.number}'s FID features at seed {seed} are missing")
                scores = confirmer.scores_of(features, full[seed])
                confirmer.remember(trial, seed, scores)
            per_seed[seed] = scores
        full_seeds = {str(seed): confirmer.full_fid(full[seed]) for seed in confirmer.seeds}
        StudyInfo.update(
            study.study,
            fid_full_compute=float(np.mean(list(full_seeds.values()))),
            fid_full_seeds=full_seeds,
            fid_name=f"fid_{confirmer.fid_protocol.num_samples}",
            fid_reference="real" if confirmer.against_real else "full_compute",
        )
        confirmation = confirmer.confirmation_of(per_seed, full_seeds)
        save_confirmation(study.study, trial.number, confirmation)  # a stored FID survives an interruption
        return {"fid": confirmation.fid, "fid_vs_full": confirmation.fid_vs_full}

    def _time_candidates(self, item: WorkItem) -> dict[str, Any]:
        """The candidates and every earlier confirmed point in one timing run (:meth:`Confirmer.timings`)."""
        trials = [self._trial(number) for number in item.spec["trials"]]
        timings = self.confirmer.timings(trials)
        return {
            "timings": {str(number): dataclasses.asdict(timing) for number, timing in timings.items()},
            "device": self.queue.worker.device,
        }

    def _record_confirmations(self, item: WorkItem) -> dict[str, Any]:
        """Each point's FID (its merge, or an earlier round's) with its speed from the one timing run."""
        study = self.study
        timing = self.queue.result(self.key(TIMING))
        timings = (timing or {}).get("timings") or {}
        confirmed = {t.number: t for t in study.records().confirmed()}
        recorded = []
        for number in item.spec["trials"]:
            trial = confirmed.get(number)
            if trial is None:
                continue  # its FID failed beyond its retries
            confirmation = trial.confirmation
            if str(number) in timings:
                data = timings[str(number)]
                apply_timing(
                    confirmation,
                    Timing(**{**data, "repeats": tuple(data.get("repeats") or ())}),
                    trial.predicted_speedup,
                )
            save_confirmation(study.study, number, confirmation)
            study.log_confirmation(number, confirmation)
            recorded.append(number)
        if timing is not None:
            StudyInfo.update(study.study, timing_device=timing["device"])
        record_proxy_fidelity(study.study)
        return {"recorded": recorded, "timed": sorted(int(n) for n in timings)}

    def _trial(self, number: int) -> TrialRecord:
        for trial in self.study.records().completed():
            if trial.number == number:
                return trial
        raise AutoFRError(f"trial {number} is not a completed trial of the study")


def _is_full(trial: TrialRecord, confirmer) -> bool:
    candidate = candidate_of(trial)
    return isinstance(candidate, ReuseSchedule) and _computes_everything(
        candidate, confirmer.fid_protocol.num_inference_steps
    )


def stage_seconds(queue: WorkQueue) -> float:
    """Device seconds the study's items have taken so far (completed items)."""
    return float(sum(r.seconds or 0.0 for r in queue.records() if r.state is optuna.trial.TrialState.COMPLETE))
