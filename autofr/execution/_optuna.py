"""Every use of Optuna's private API in autofr, in one place.

Optuna 5 has no public door for these; each is wrapped here so an Optuna upgrade is checked in one
file (the storage, heartbeat and budget tests in ``tests/cluster`` and the front tests in
``tests/search/test_front.py`` exercise every function through its callers). Nothing else in autofr imports a name that
starts with ``_`` from Optuna or touches a private attribute of its objects.

=============================================  ==========================================================
private name                                   why autofr needs it
=============================================  ==========================================================
``optuna.storages._heartbeat.BaseHeartbeat``   the heartbeat interface :class:`HeartbeatJournalStorage`
                                               implements so ``fail_stale_trials`` (public) works on
                                               the journal file as it does on RDBStorage; its private
                                               ``_get_stale_trial_ids`` is the method that implements
                                               (``autofr/execution/journal.py``, the one override)
``Study._storage``, ``Study._study_id``         a worker records heartbeats and counts trials of its
                                               own study (``study_storage``, ``study_id``)
``Trial._trial_id``, ``FrozenTrial._trial_id``  heartbeats and stale checks are keyed by trial id
``optuna.storages._CachedStorage``             what ``optuna.create_study(storage="postgresql://...")``
                                               wraps an RDBStorage in: finished trials are read once,
                                               so a worker's per-trial cost does not grow with the study
``optuna.study._multi_objective``              Optuna's own Pareto front and non-domination ranks over
                                               arbitrary points (``is_pareto_front``,
                                               ``nondomination_ranks``): autofr's fronts are over
                                               (measured speed, FID) as well as the study's values
``optuna._hypervolume.compute_hypervolume``    Optuna's exact hypervolume (WFG), for the history plot
=============================================  ==========================================================

Replaced by public API where Optuna 5 has one: ``study.ask``/``tell``/``add_trial``/``enqueue_trial``,
``optuna.storages.fail_stale_trials``, ``RetryHeartbeatStaleTrialCallback``, ``study.best_trials``,
``study.set_metric_names``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.storages._heartbeat import BaseHeartbeat

__all__ = [
    "BaseHeartbeat",
    "cached_rdb_storage",
    "compute_hypervolume",
    "heartbeat_enabled",
    "nondomination_ranks",
    "is_pareto_front",
    "study_id",
    "study_storage",
    "trial_id",
]


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object a study reads and writes through."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study`` (what every storage method takes)."""
    return study._study_id


def trial_id(trial: Any) -> int:
    """The storage's id of a live ``Trial`` or a ``FrozenTrial``."""
    return trial._trial_id


def heartbeat_enabled(storage: Any) -> bool:
    """Whether ``storage`` runs Optuna's heartbeat protocol (an interval is set)."""
    return isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None


def cached_rdb_storage(storage: optuna.storages.RDBStorage) -> optuna.storages.BaseStorage:
    """``storage`` behind Optuna's trial cache, as ``optuna.create_study`` does for a URL."""
    return optuna.storages._CachedStorage(storage)


def is_pareto_front(loss_values: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``loss_values`` (every column minimised; equal
    rows are all on the front)."""
    from optuna.study._multi_objective import _is_pareto_front

    if len(loss_values) == 0:
        return np.zeros(0, dtype=bool)
    return _is_pareto_front(np.asarray(loss_values, dtype=float), assume_unique_lexsorted=False)


def nondomination_ranks(loss_values: np.ndarray) -> np.ndarray:
    """Non-domination rank of every row (0 = the Pareto front, 1 = the front of the rest, ...)."""
    from optuna.study._multi_objective import _calculate_nondomination_rank

    if len(loss_values) == 0:
        return np.zeros(0, dtype=int)
    return _calculate_nondomination_rank(np.asarray(loss_values, dtype=float))


def compute_hypervolume(loss_values: np.ndarray, reference_point: np.ndarray) -> float:
    """Volume dominated by ``loss_values`` (minimised) and bounded by ``reference_point``."""
    from optuna._hypervolume import compute_hypervolume as wfg

    points = np.asarray(loss_values, dtype=float)
    reference = np.asarray(reference_point, dtype=float)
    if len(points):
        points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    return float(wfg(points, reference))
