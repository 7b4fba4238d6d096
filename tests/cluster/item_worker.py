"""A worker of work items whose work only sleeps: the work-queue tests run it as a real process.

    python tests/cluster/item_worker.py study_name=s count=6 sleep_s=0.3 storage.journal_path=/tmp/j.log

Every worker adds the same items (the queue keeps each key once): ``count`` items of stage ``a``,
then one quiet item ``timing`` after stage ``a``, then ``count`` items of stage ``b`` after ``timing``.
Each item sleeps ``sleep_s`` (the quiet one ``quiet_sleep_s``) and returns this process's pid; an item
whose key is in ``fail_keys`` raises. ``device`` names the worker's device (quiet items keep a device
to themselves). Exit status: 0 done, 2 an autofr error, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import optuna
from omegaconf import OmegaConf

from autofr.cli._config import run_cli
from autofr.execution.storage import open_storage
from autofr.execution.work import WorkerIdentity, WorkItem, WorkQueue

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = {
    "study_name": "items",
    "count": 4,
    "sleep_s": 0.2,
    "quiet_sleep_s": 1.0,
    "fail_keys": [],
    "device": "cpu",
}


def items(n: int) -> list[WorkItem]:
    first = [WorkItem(f"a:{k}", "a") for k in range(n)]
    quiet = [WorkItem("timing", "timing", after=("a",), quiet=True)]
    last = [WorkItem(f"b:{k}", "b", after=("timing",)) for k in range(n)]
    return first + quiet + last


def run(argv: list[str]) -> int:
    storage = OmegaConf.load(ROOT / "conf" / "storage" / "journal.yaml")
    cfg = OmegaConf.merge({"storage": storage, **DEFAULTS}, OmegaConf.from_dotlist(argv))
    queue = WorkQueue.open(open_storage(cfg.storage), cfg.study_name, WorkerIdentity.current(str(cfg.device)))
    queue.add(items(int(cfg.count)))
    print("ready", flush=True)

    def execute(item: WorkItem) -> dict:
        if item.key in cfg.fail_keys:
            raise ValueError(f"item {item.key} was asked to fail")
        time.sleep(cfg.quiet_sleep_s if item.quiet else cfg.sleep_s)
        return {"pid": os.getpid()}

    queue.run(execute)
    return 0


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sys.exit(run_cli(run))
