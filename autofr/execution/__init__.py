"""Generic Optuna machinery: storages, workers on one study, the exact global budget, heartbeats.

Nothing here knows about diffusion models or autofr's records; it runs any objective.

- :mod:`~autofr.execution.storage`: ``open_storage`` / ``check_storage`` (journal file or RDB);
- :mod:`~autofr.execution.journal`: the journal-file storage with heartbeats;
- :mod:`~autofr.execution.workers`: ``open_study``, ``run_worker`` (ask / claim / evaluate / tell);
- :mod:`~autofr.execution.budget`: the rules that keep the budget exact across workers;
- :mod:`~autofr.execution.runtime`: heartbeat thread, stop signals, progress bar;
- :mod:`~autofr.execution.local`: local worker processes;
- :mod:`~autofr.execution._optuna`: every use of Optuna's private API, listed.

This package imports neither torch nor diffusers (workers and benchmarks start in a second).
"""

from autofr.execution.local import spawn_local_workers
from autofr.execution.runtime import WorkerInterrupted
from autofr.execution.settings import StorageSettings
from autofr.execution.storage import check_storage, mask_url, open_storage
from autofr.execution.workers import WorkerSummary, open_study, run_worker, wait_for_user_attr

__all__ = [
    "StorageSettings",
    "WorkerInterrupted",
    "WorkerSummary",
    "check_storage",
    "mask_url",
    "open_storage",
    "open_study",
    "run_worker",
    "spawn_local_workers",
    "wait_for_user_attr",
]
