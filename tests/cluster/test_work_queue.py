"""Work items (autofr/execution/work.py) with real worker processes on a real journal and PostgreSQL:
each key done once, dependencies kept, a quiet item alone on its device, a killed worker's item
taken over after the grace period, a failing item retried and then given up without stopping the rest."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autofr.execution.work import ItemRecord, WorkerIdentity, WorkQueue
from tests.cluster.conftest import finish, stop_all, wait_until

WORKER = Path(__file__).with_name("item_worker.py")


def start(backend, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *backend.overrides(), *overrides],
        env=backend.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def queue_of(backend) -> WorkQueue:
    """The test's own handle on the workers' queue (the storage the workers use)."""
    from autofr.execution.storage import open_storage

    cfg = {"url": backend.url, "journal_path": str(backend.journal_path), "heartbeat_interval": 1, "grace_period": 4}
    return WorkQueue.open(open_storage(cfg), backend.study_name, WorkerIdentity.current("observer"))


def completed_by_key(queue: WorkQueue) -> Counter:
    return Counter(r.item.key for r in queue.records() if r.state is TrialState.COMPLETE)


def spans(queue: WorkQueue, stage: str) -> list[tuple]:
    trials = {t.number: t for t in queue.study.get_trials(deepcopy=False)}
    return [
        (trials[r.number].datetime_start, trials[r.number].datetime_complete, r.worker["pid"])
        for r in queue.records()
        if r.item.stage == stage and r.state is TrialState.COMPLETE
    ]


def test_two_workers_share_the_items_once_each_in_stage_order(backend):
    workers = [start(backend, "count=6", "sleep_s=0.5") for _ in range(2)]
    try:
        results = [finish(worker) for worker in workers]
    finally:
        stop_all(workers)
    assert [code for code, _, _ in results] == [0, 0], [err[-1500:] for _, _, err in results]
    queue = queue_of(backend)
    done = completed_by_key(queue)
    assert set(done) == {f"a:{k}" for k in range(6)} | {"timing"} | {f"b:{k}" for k in range(6)}
    assert set(done.values()) == {1}  # every key exactly once
    pids = {r.worker["pid"] for r in queue.records() if r.state is TrialState.COMPLETE}
    assert pids == {worker.pid for worker in workers}  # both took part
    assert all(r.worker["host"] and r.worker["device"] == "cpu" for r in queue.records() if r.worker)
    ((quiet_start, quiet_end, _),) = spans(queue, "timing")
    assert max(end for _, end, _ in spans(queue, "a")) <= quiet_start  # after every item of stage a
    assert min(begin for begin, _, _ in spans(queue, "b")) >= quiet_end  # and before stage b
    assert [row.line() for row in queue.progress()][0].startswith("stage a: 6/6 done")


def test_a_quiet_item_has_its_device_to_itself(journal_backend):
    # stage b cannot start before the timing item, so give the device other work: two queues' items
    # interleave on one device only outside the quiet run
    workers = [start(journal_backend, "count=4", "sleep_s=0.4", "quiet_sleep_s=2") for _ in range(2)]
    try:
        results = [finish(worker) for worker in workers]
    finally:
        stop_all(workers)
    assert [code for code, _, _ in results] == [0, 0]
    queue = queue_of(journal_backend)
    ((quiet_start, quiet_end, quiet_pid),) = spans(queue, "timing")
    others = spans(queue, "a") + spans(queue, "b")
    assert all(end <= quiet_start or begin >= quiet_end for begin, end, _ in others)


def test_a_killed_workers_item_is_taken_over_after_the_grace_period(backend):
    victim = start(backend, "count=4", "sleep_s=30")
    try:
        queue = queue_of_when_ready(backend, victim)
        running = wait_until(
            lambda: next((r for r in queue.records() if r.state is TrialState.RUNNING and r.worker), None),
            60,
            "the victim to run an item",
        )
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        survivor = start(backend, "count=4", "sleep_s=0.2")
        code, _, err = finish(survivor, timeout=120)
    finally:
        stop_all([victim])
    assert code == 0, err[-1500:]
    copies = [r for r in queue.records() if r.item.key == running.item.key]
    assert [r.state for r in copies].count(TrialState.FAIL) == 1  # the victim's, failed by the survivor
    assert [r.state for r in copies].count(TrialState.COMPLETE) == 1
    assert set(completed_by_key(queue).values()) == {1}


def queue_of_when_ready(backend, process) -> WorkQueue:
    assert process.stdout.readline().strip() == "ready"
    return queue_of(backend)


def test_a_failing_item_is_retried_then_given_up_and_the_rest_go_on(journal_backend):
    worker = start(journal_backend, "count=3", "sleep_s=0.05", "quiet_sleep_s=0.05", "fail_keys=[a:1]")
    code, _, err = finish(worker)
    assert code == 0, err[-1500:]
    queue = queue_of(journal_backend)
    states = queue.keys()
    assert states["a:1"].status == "failed" and "asked to fail" in states["a:1"].record.fail_reason
    assert len([r for r in queue.records() if r.item.key == "a:1"]) == 3  # the first try and 2 retries
    assert all(state.status == "done" for key, state in states.items() if key != "a:1")


def test_keys_added_twice_are_kept_once(journal_backend):
    queue = queue_of(journal_backend)
    from tests.cluster.item_worker import items

    assert queue.add(items(2)) == 5
    assert queue.add(items(3)) == 2  # only the new keys
    assert sorted(queue.keys()) == sorted(["a:0", "a:1", "a:2", "timing", "b:0", "b:1", "b:2"])
    assert isinstance(queue.study, optuna.Study)


@pytest.mark.parametrize("device", ["cpu"])
def test_the_worker_identity_names_the_host_process_and_device(device):
    worker = WorkerIdentity.current(device)
    assert worker.pid > 0 and worker.host and worker.place.endswith(f"/{device}")


def test_an_item_finished_by_another_worker_since_this_one_looked_is_not_claimed(journal_backend):
    """A worker's view of the queue may be old: the item it saw waiting was claimed and finished by
    another worker meanwhile (a quick item). Claiming it must skip it, not crash the worker."""
    from autofr.execution.runtime import SignalGuard
    from autofr.execution.work import WorkItem

    slow, fast = queue_of(journal_backend), queue_of(journal_backend)
    slow.add([WorkItem("quick", "a")])
    seen = slow.records()  # "quick" is WAITING in this view
    assert fast.run(lambda item: {"by": "fast"}) == 1
    with SignalGuard() as guard:
        claimed = slow._claim(seen, slow.keys(seen), lambda stage: True, guard)
    assert not isinstance(claimed, ItemRecord)  # skipped: the worker looks at the queue again
    assert slow.result("quick") == {"by": "fast"}
    assert slow.run(lambda item: {"by": "slow"}) == 0  # and finds nothing left to do
