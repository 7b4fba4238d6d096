"""Confirmation: the candidates that decide the answer, scored with FID-N at several seeds and timed.

Order of candidates (:func:`confirm_candidates`): full compute first (every comparison needs it);
then autofr's own candidates (the proxy Pareto front and the calibrated warm-start schedules, fastest
first) interleaved with the hand-set references (FRDiff's settings, the DeepCache-style schedules,
fewer steps) and the peers (other libraries' caches, :mod:`autofr.peers`), so all stand on the FID plot
and the fastest hand-set schedule within the target is among the first confirmed; then the
next ``layers - 1`` non-dominated layers behind the proxy front; then the fronts of the other
recorded metrics named in ``proxies``; then the ``top_k`` best proxies. With a quality target the
front and the layers are ordered by how likely a member decides "the fastest schedule within the
target": members predicted inside the target (or near it, within the proxy's noise) first, by their
expected speed within it (chance of meeting the target times speed); members predicted far outside
it last. A schedule proposed twice is confirmed once.

Scoring (:class:`Confirmer`): FID-N against the real data (and against full compute's own samples)
at every seed of ``fid_seeds``, each seed a paired comparison (the same initial noise for every
candidate at that seed); full compute's FID at the same seeds is stored with each confirmation.
Timing: every scored candidate in one interleaved run, blocks of candidates bracketed by full
compute, ``repeats`` times (:func:`interleaved_speedups`), so machine noise hits both alike (full
compute measures ~1.00x itself) and full compute is not re-timed once per candidate.
A peer is sampled and timed with its cache enabled instead of a schedule; its FID is cached under
its description and the batch size (a dynamic cache decides per batch, so its samples depend on it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from autofr.evaluation import EvalProtocol, generate
from autofr.files import atomic_write_text
from autofr.peers import Peer, peer_enabled, peer_key
from autofr.schedule import ReuseSchedule
from autofr.search import front as fronts
from autofr.search.measures import StudyMeasures
from autofr.search.origin import Origin
from autofr.search.records import Confirmation, StudyInfo, StudyRecords, TrialRecord, save_confirmation

logger = logging.getLogger(__name__)


def possibly_within(trial: TrialRecord, z: float = 2.0) -> bool:
    """Whether the trial may meet the quality target: its constraint is at most ``z`` standard
    deviations of its estimate above zero (feasible trials always may)."""
    if trial.constraint is None:
        return True
    return trial.constraint - z * (trial.fid_estimate_sd or 0.0) <= 0


def chance_within(trial: TrialRecord) -> float:
    """The chance that the trial meets the quality target: its estimate read as normal with the
    estimate's sd (a trial without a constraint always meets it; one without an sd by its sign)."""
    if trial.constraint is None:
        return 1.0
    sd = trial.fid_estimate_sd or 0.0
    if sd <= 0:
        return 1.0 if trial.constraint <= 0 else 0.0
    return 0.5 * math.erfc(trial.constraint / (sd * math.sqrt(2.0)))


def deciding_order(trial: TrialRecord) -> tuple:
    """Trials that may meet the target first, by their expected speed within it (the chance of meeting
    the target times the speed): they decide the answer. A schedule clearly within the target goes
    before a slightly faster one that most likely misses it."""
    return (0 if possibly_within(trial) else 1, -chance_within(trial) * trial.search_speedup, trial.number)


def _firsts_of_each(trials: list[TrialRecord], method: Callable[[TrialRecord], Any]) -> list[TrialRecord]:
    """``trials`` (already in order) with the first of every method moved to the front."""
    firsts, seen = [], set()
    for trial in trials:
        if method(trial) not in seen:
            seen.add(method(trial))
            firsts.append(trial)
    return firsts + [t for t in trials if t not in firsts]


def confirm_candidates(
    records: StudyRecords,
    top_k: int,
    limit: int | None = None,
    layers: int = 1,
    proxies: Sequence[str] = (),
    order: Callable[[TrialRecord], tuple] | None = None,
    near_target: bool = False,
) -> list[TrialRecord]:
    """Trials to confirm with FID, most important first, at most ``limit`` (see the module docstring).
    ``order`` sorts each front layer and the references (default: fastest first); ``near_target``
    adds the infeasible trials that may still meet the target right after the front. Trials already
    confirmed, and trials whose schedule repeats one already chosen or confirmed, are skipped."""
    trials = records.completed()
    if not trials:
        return []
    done = {t.number for t in trials if t.confirmation is not None}
    baseline = [t for t in trials if t.origin.is_full_compute]
    front, *behind = fronts.proxy_layers(trials, layers)
    if near_target:
        front = front + [t for t in trials if not t.feasible and possibly_within(t) and not t.is_peer]
    chosen = {t.number for t in front}
    front = front + [t for t in trials if t.origin is Origin.CALIBRATED and t.number not in chosen]  # autofr's own
    references = [t for origin in Origin.references() for t in trials if t.origin is origin]
    peers = [t for t in trials if t.is_peer]
    if order is not None:
        front, references, peers = sorted(front, key=order), sorted(references, key=order), sorted(peers, key=order)
        behind = [sorted(layer, key=order) for layer in behind]
        # each method's best setting first: the fastest MagCache and the fastest FirstBlockCache that may
        # meet the target both decide the comparison, a second MagCache threshold less so
        peers = _firsts_of_each(peers, lambda t: (t.peer or {}).get("method"))
        references = _firsts_of_each(references, lambda t: t.origin)
    streams = (front, references, peers)
    interleaved = [stream[k] for k in range(max(map(len, streams))) for stream in streams if k < len(stream)]
    interleaved += [t for layer in behind for t in layer]
    interleaved += [t for metric in proxies for t in fronts.metric_front(trials, metric)]
    by_proxy = sorted((t for t in trials if not t.is_peer), key=lambda t: t.values[1])[:top_k]
    seen = {t.schedule_key() for t in trials if t.number in done}
    ordered = []
    for trial in baseline + interleaved + by_proxy:
        key = trial.schedule_key()
        if key not in seen:
            seen.add(key)
            ordered.append(trial)
    return ordered[:limit] if limit else ordered


def _timed(pipe, protocol: EvalProtocol, candidate) -> float:
    """Wall seconds of one ``generate`` of ``candidate``: a :class:`ReuseSchedule`, a
    :class:`~autofr.peers.Peer` (its cache enabled around the timed call, not inside it) or None
    (full compute)."""
    schedule = candidate if isinstance(candidate, ReuseSchedule) else None
    steps = schedule.num_inference_steps if schedule is not None else protocol.num_inference_steps
    with peer_enabled(pipe, candidate) if isinstance(candidate, Peer) else contextlib.nullcontext():
        began = time.perf_counter()
        generate(pipe, protocol.replace(num_inference_steps=steps), schedule)
        return time.perf_counter() - began


def timed_generation(pipe, protocol: EvalProtocol, schedules: dict, repeats: int = 2) -> dict[str, float]:
    """Median wall seconds of ``generate`` per candidate (see :func:`_timed`), interleaved so machine
    noise hits all alike."""
    times: dict[str, list[float]] = {key: [] for key in schedules}
    for _ in range(repeats):
        for key, candidate in schedules.items():
            times[key].append(_timed(pipe, protocol, candidate))
    return {key: statistics.median(values) for key, values in times.items()}


@dataclass(frozen=True)
class Timing:
    """One candidate's measured speed: median seconds, full compute's median seconds, and the median
    over repeats of full compute's time around the candidate's block over the candidate's time."""

    seconds: float
    full_seconds: float
    speedup: float
    repeats: tuple[float, ...] = ()  # the ratio in each repeat (the spread behind the median)


def apply_timing(confirmation: Confirmation, timing: Timing, predicted_speedup: float | None) -> Confirmation:
    """Store a measured :class:`Timing` in ``confirmation`` (and the measured/predicted gap)."""
    confirmation.latency_s, confirmation.full_latency_s = timing.seconds, timing.full_seconds
    confirmation.measured_speedup = timing.speedup
    confirmation.speedup_repeats = [float(r) for r in timing.repeats]
    if predicted_speedup:
        confirmation.speed_gap = timing.speedup / predicted_speedup
    return confirmation


def interleaved_speedups(
    pipe, protocol: EvalProtocol, candidates: dict, repeats: int = 3, block: int = 4
) -> dict[str, Timing]:
    """Time every candidate against full compute in one run: each repeat times full compute, then
    ``block`` candidates, then full compute again, and so on (the order rotates between repeats);
    a candidate's ratio in a repeat is the mean of the two full-compute times around its block over
    its own time, and its speedup the median of those ratios. Full compute is timed ``n / block + 1``
    times per repeat instead of once per candidate, and slow drift of the machine cancels in each
    ratio. ``candidates``: key -> schedule, peer or None (see :func:`_timed`)."""
    keys = list(candidates)
    block = max(1, int(block))
    seconds: dict[str, list[float]] = {key: [] for key in keys}
    ratios: dict[str, list[float]] = {key: [] for key in keys}
    full: list[float] = []
    for repeat in range(max(1, int(repeats))):
        shift = (repeat * block) % len(keys) if keys else 0
        order = keys[shift:] + keys[:shift]
        before = _timed(pipe, protocol, None)
        full.append(before)
        for start in range(0, len(order), block):
            chunk = {key: _timed(pipe, protocol, candidates[key]) for key in order[start : start + block]}
            after = _timed(pipe, protocol, None)
            full.append(after)
            for key, spent in chunk.items():
                seconds[key].append(spent)
                ratios[key].append(0.5 * (before + after) / spent)
            before = after
    full_median = statistics.median(full)
    return {
        key: Timing(statistics.median(seconds[key]), full_median, statistics.median(ratios[key]), tuple(ratios[key]))
        for key in keys
    }


def candidate_of(trial: TrialRecord) -> ReuseSchedule | Peer:
    """What a trial runs: its peer, else its schedule."""
    return Peer.from_description(trial.peer) if trial.peer else ReuseSchedule.from_dict(trial.schedule)


def _computes_everything(schedule: ReuseSchedule, steps: int) -> bool:
    """Full compute at the protocol's step count: every unit at every step (mixing then never applies)."""
    return schedule.num_inference_steps == steps and all(
        all(unit.compute_mask(steps)) for unit in schedule.units.values()
    )


class Confirmer:
    """FID-N at ``fid_seeds`` seeds and interleaved timing for chosen trials of one study.

    Args:
        pipe: the pipeline (no schedule installed).
        protocol: the study's protocol; ``num_samples`` is replaced by ``fid_samples``.
        measures: the study's measures (feature extractor, real reference).
        fid_samples: N of FID-N.
        fid_seeds: how many seeds (``protocol.seed``, ``+1``, ...), each paired across candidates.
        timing_repeats: repeats of the one interleaved timing run of all candidates (0: no timing).
        timing_samples: samples per timed run (one batch).
        reuse_trial_scores: ``protocol`` is the protocol the trials were scored with, so a schedule
            trial whose adaptive fidelity reached N = ``fid_samples`` already holds its FID-N at
            ``protocol.seed`` (the same noise): that seed is taken from the trial, not sampled again.
    """

    def __init__(
        self,
        pipe,
        protocol: EvalProtocol,
        measures: StudyMeasures,
        fid_samples: int,
        fid_seeds: int = 1,
        timing_repeats: int = 3,
        timing_samples: int | None = None,
        cache_dir: str | Path | None = None,
        model_id: str | None = None,
        reuse_trial_scores: bool = False,
    ) -> None:
        self.pipe = pipe
        self.reuse_trial_scores = reuse_trial_scores
        self.seconds: dict[str, float] = {}  # wall seconds of the last confirm(): "fid", "timing"
        self.seeds = [protocol.seed + k for k in range(max(1, int(fid_seeds)))]
        self.fid_protocol = protocol.replace(num_samples=int(fid_samples))
        self.measures = measures
        self.timing_repeats = int(timing_repeats)
        self.timing_protocol = protocol.replace(
            num_samples=int(timing_samples or min(protocol.num_samples, protocol.batch_size))
        )
        self._full: dict[int, Any] = {}  # full compute's FID features per seed
        self.against_real = measures.real_reference is not None  # FID against real data (else full compute)
        self._warm = False
        self._cache = ScoreCache(cache_dir, pipe, measures, model_id) if cache_dir is not None else None

    # ------------------------------------------------------------------ features and scores
    def steps_of(self, candidate) -> int:
        """The step count ``candidate`` samples with (a schedule's own, else the protocol's)."""
        if isinstance(candidate, ReuseSchedule):
            return candidate.num_inference_steps
        return self.fid_protocol.num_inference_steps

    def slice_features(self, candidate, seed: int, start: int, stop: int):
        """FID features (float64, one row per sample) of samples ``start .. stop - 1`` of the FID-N
        protocol at ``seed``; ``candidate``: a schedule, a peer, or None (full compute). A slice is
        exactly that part of a whole run (:func:`~autofr.evaluation.generate`), so slices from
        several workers concatenate to the features of one run."""
        from autofr.quality.features import extract_features

        if isinstance(candidate, ReuseSchedule) and _computes_everything(
            candidate, self.fid_protocol.num_inference_steps
        ):
            candidate = None  # bit-identical to full compute (tests/reuse): not run again
        protocol = self.fid_protocol.replace(seed=seed, num_inference_steps=self.steps_of(candidate), num_samples=stop)
        schedule = candidate if isinstance(candidate, ReuseSchedule) else None
        with peer_enabled(self.pipe, candidate) if isinstance(candidate, Peer) else contextlib.nullcontext():
            samples = generate(self.pipe, protocol, schedule, first=start)
        return extract_features(self.measures.feature(), samples)

    def full_features(self, seed: int):
        """Full compute's FID features at ``seed`` (sampled once per process)."""
        if seed not in self._full:
            self._full[seed] = self.slice_features(None, seed, 0, self.fid_protocol.num_samples)
        return self._full[seed]

    def scores_of(self, features, full_features) -> dict[str, float | None]:
        """``{"fid_vs_full", "fid"}`` of a candidate's features: FID against full compute's features at
        the same seed, and against the real data (None without real data)."""
        from autofr.quality.features import FeatureStats, frechet_distance

        stats = FeatureStats.from_features(features)
        real = self.measures.real_stats() if self.against_real else None
        return {
            "fid_vs_full": frechet_distance(stats, FeatureStats.from_features(full_features)),
            "fid": frechet_distance(stats, real) if real is not None else None,
        }

    def full_fid(self, full_features) -> float:
        """Full compute's FID against the real data (0 without real data: it is its own reference)."""
        from autofr.quality.features import FeatureStats, frechet_distance

        if not self.against_real:
            return 0.0
        return frechet_distance(FeatureStats.from_features(full_features), self.measures.real_stats())

    def full_compute(self) -> tuple[float, dict[str, float]]:
        """Mean and per-seed FID of full compute (against the real data, else against itself: 0)."""
        per_seed = {str(seed): self.full_fid(self.full_features(seed)) for seed in self.seeds}
        return statistics.fmean(per_seed.values()), per_seed

    @staticmethod
    def confirmation_of(per_seed: dict[int, dict], full_seeds: dict[str, float]) -> Confirmation:
        """The :class:`Confirmation` of a candidate's scores at each seed (``scores_of``'s dicts)."""
        real = {str(seed): s["fid"] if s["fid"] is not None else s["fid_vs_full"] for seed, s in per_seed.items()}
        return Confirmation(
            fid=statistics.fmean(real.values()),
            fid_vs_full=statistics.fmean(s["fid_vs_full"] for s in per_seed.values()),
            fid_seeds=real,
            fid_full_seeds=dict(full_seeds),
        )

    def cache_key(self, trial: TrialRecord, seed: int) -> tuple[EvalProtocol, dict]:
        """Where ``trial``'s FID-N at ``seed`` is kept in the score cache: its protocol and schedule
        (a peer: its description and the batch size, since a dynamic cache decides per batch)."""
        protocol = self.fid_protocol.replace(seed=seed, num_inference_steps=self.steps_of(candidate_of(trial)))
        key = (
            trial.schedule if trial.peer is None else {"peer": peer_key(trial.peer), "batch_size": protocol.batch_size}
        )
        return protocol, key

    def known_scores(self, trial: TrialRecord, seed: int, full_features=None) -> dict | None:
        """``trial``'s scores at ``seed`` without sampling it: from the score cache, or from the trial
        itself (which needs full compute's features at ``seed``: given, or sampled here)."""
        cached = self._cache.get(*self.cache_key(trial, seed)) if self._cache is not None else None
        return cached if cached is not None else self._from_trial(trial, seed, full_features)

    def remember(self, trial: TrialRecord, seed: int, scores: dict) -> None:
        if self._cache is not None:
            self._cache.put(*self.cache_key(trial, seed), scores)

    def score(self, trial: TrialRecord) -> Confirmation:
        """FID-N of ``trial``'s schedule (or peer) at every seed (not timed)."""
        candidate = candidate_of(trial)
        _, full_seeds = self.full_compute()
        per_seed = {}
        for seed in self.seeds:
            scores = self.known_scores(trial, seed)
            if scores is None:
                features = self.slice_features(candidate, seed, 0, self.fid_protocol.num_samples)
                scores = self.scores_of(features, self.full_features(seed))
                self.remember(trial, seed, scores)
            per_seed[seed] = scores
        return self.confirmation_of(per_seed, full_seeds)

    def cached_seeds(self, trial: TrialRecord) -> list[int]:
        """The seeds at which the disk cache already holds ``trial``'s FID-N (scoring them samples nothing)."""
        if self._cache is None:
            return []
        return [seed for seed in self.seeds if self._cache.get(*self.cache_key(trial, seed)) is not None]

    def takes_from_trial(self, trial: TrialRecord, seed: int) -> bool:
        """Whether ``trial`` already holds its FID-N at ``seed``: its adaptive fidelity reached N at the
        study's seed (a schedule's samples do not depend on how they were batched; a peer's dynamic
        cache's do)."""
        n = self.fid_protocol.num_samples
        return bool(
            self.reuse_trial_scores
            and not trial.peer
            and seed == self.seeds[0]
            and trial.fidelity == n
            and trial.fid_vs_full_top is not None
            and n in trial.fidelity_deltas
        )

    def _from_trial(self, trial: TrialRecord, seed: int, full_features=None) -> dict | None:
        """The trial's own FID-N at ``seed`` (see :meth:`takes_from_trial`), or None."""
        if not self.takes_from_trial(trial, seed):
            return None
        n = self.fid_protocol.num_samples
        if self.against_real:
            full = self.full_features(seed) if full_features is None else full_features
            real = self.full_fid(full)
        else:
            real = None
        return {
            "fid_vs_full": trial.fid_vs_full_top,
            "fid": real + trial.fidelity_deltas[n] if real is not None else None,
        }

    def timings(self, trials: Sequence[TrialRecord]) -> dict[int, Timing]:
        """The measured speed of every trial, all in one interleaved run against full compute
        (:func:`interleaved_speedups`, ``timing_repeats`` repeats), by trial number."""
        if self.timing_repeats < 1 or not trials:
            return {}
        if not self._warm:  # first calls pay one-off allocation costs
            timed_generation(self.pipe, self.timing_protocol.replace(num_samples=1), {"full": None}, repeats=1)
            self._warm = True
        timings = interleaved_speedups(
            self.pipe,
            self.timing_protocol,
            {str(trial.number): candidate_of(trial) for trial in trials},
            repeats=self.timing_repeats,
        )
        return {int(number): timing for number, timing in timings.items()}

    def time(self, scored: Sequence[tuple[TrialRecord, Confirmation]]) -> None:
        """Add the measured speedup to every ``(trial, confirmation)`` (:meth:`timings`)."""
        timings = self.timings([trial for trial, _ in scored])
        for trial, confirmation in scored:
            if trial.number in timings:
                apply_timing(confirmation, timings[trial.number], trial.predicted_speedup)

    def confirm(
        self, study: optuna.Study, candidates: Sequence[TrialRecord], progress=None, on_confirmed=None
    ) -> list[tuple[int, Confirmation]]:
        """Score and store each candidate (one failure does not lose the others; a stored FID survives
        an interrupted run), then time them all in one interleaved run and store the speeds."""
        mean, per_seed = self.full_compute()
        StudyInfo.update(
            study,
            fid_full_compute=mean,
            fid_full_seeds=per_seed,
            fid_name=f"fid_{self.fid_protocol.num_samples}",
            fid_reference="real" if self.against_real else "full_compute",
        )
        scored, began = [], time.perf_counter()
        for trial in progress(candidates, "confirming with FID") if progress else candidates:
            try:
                confirmation = self.score(trial)
            except Exception as error:  # one bad confirmation must not lose the others
                logger.warning("confirming trial %d failed: %s", trial.number, error)
                continue
            save_confirmation(study, trial.number, confirmation)
            scored.append((trial, confirmation))
        self.seconds["fid"] = time.perf_counter() - began
        began = time.perf_counter()
        try:
            self.time(scored)
        except Exception as error:  # the FIDs stand without the speeds
            logger.warning("timing the confirmed trials failed: %s", error)
        self.seconds["timing"] = time.perf_counter() - began
        for trial, confirmation in scored:
            if confirmation.measured_speedup is not None:
                save_confirmation(study, trial.number, confirmation)
            if on_confirmed is not None:
                on_confirmed(trial, confirmation)
        return [(trial.number, confirmation) for trial, confirmation in scored]


class ScoreCache:
    """FID-N of a schedule at a seed, kept on disk: the same model, protocol, schedule, feature and
    real data always give the same value, so a resumed study, a second study of the same model or
    another search seed never samples a reference schedule again (``<cache_dir>/scores/``)."""

    def __init__(self, cache_dir: str | Path, pipe, measures: StudyMeasures, model_id: str | None) -> None:
        from autofr.quality._identity import feature_id, pipeline_fingerprint

        self.folder = Path(cache_dir).expanduser() / "scores"
        real = measures.real_stats() if measures.real_reference is not None else None
        real_id = (
            hashlib.sha256(real.mu.tobytes() + real.sigma.tobytes()).hexdigest()[:16] if real is not None else None
        )
        self._identity = {
            "model": model_id,
            "pipeline": pipeline_fingerprint(pipe),
            "feature": feature_id(measures.feature()),
            "real": real_id,
        }

    def _path(self, protocol: EvalProtocol, schedule: dict) -> Path:
        """``schedule``: a schedule's dict, or ``{"peer": peer_key, "batch_size": N}`` for a peer."""
        key = json.dumps(
            {
                **self._identity,
                "protocol": protocol.cache_key(),
                "schedule": {k: v for k, v in schedule.items() if k != "provenance"},
            },
            sort_keys=True,
        )
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"

    def get(self, protocol: EvalProtocol, schedule: dict) -> dict | None:
        path = self._path(protocol, schedule)
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except (OSError, ValueError):
            return None

    def put(self, protocol: EvalProtocol, schedule: dict, scores: dict) -> None:
        atomic_write_text(self._path(protocol, schedule), json.dumps(scores))


def record_proxy_fidelity(study: optuna.Study) -> list[dict] | None:
    """Rank correlation of every recorded proxy with FID-N over the confirmed trials (3 or more)."""
    from autofr.quality.fidelity import proxy_fidelity

    records = StudyRecords.load(study)
    confirmed = records.confirmed()
    if len(confirmed) < 3:
        return None
    names = list(confirmed[0].proxy_metrics)
    proxies = {name: [t.proxy_metrics.get(name, float("nan")) for t in confirmed] for name in names}
    rows = proxy_fidelity(proxies, [t.fid for t in confirmed])
    fields = {"proxy_fidelity": rows}
    for row in rows:
        if row.get("proxy") == records.info.proxy_name:
            fields.update(proxy_fid_spearman=row.get("spearman"), proxy_fid_kendall=row.get("kendall"))
    StudyInfo.update(study, **fields)
    return rows
