"""Local worker processes: ``autofr-search search.workers=N`` runs N processes on one study."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

from autofr.errors import ConfigError

logger = logging.getLogger(__name__)

_SEARCH_ENTRY = "import sys; from autofr.cli.search import main; sys.exit(main())"


def spawn_local_workers(argv: Sequence[str], n: int, command: Sequence[str] | None = None) -> int:
    """Run ``n`` worker processes on this machine and wait for them; the exit status to return.

    Each child re-runs the search command line with ``argv`` (the Hydra overrides) plus
    ``search.workers=1``; all but the first also get ``search.progress=false``, so one progress bar
    shows the study. Children share the study through its storage (the journal file or PostgreSQL)
    and its global budget. SIGINT and SIGTERM are forwarded to every child once (children run in
    their own sessions, so a terminal's Ctrl-C reaches them only through this forwarding). A parent
    killed outright (SIGKILL) leaves its children running; they finish the budget on their own.

    Args:
        argv: the command's arguments (``sys.argv[1:]``), or a whole command line that starts with
            this Python (``[sys.executable, "-m", "autofr.cli.search", *overrides]``).
        n: number of worker processes.
        command: the program to run before ``argv``; default: ``autofr-search`` in this Python
            (``python -c "from autofr.cli.search import main; ..."``), or nothing when ``argv``
            is a whole command line.

    Returns:
        0 when every worker exited 0, else the first non-zero status (128 + N for a signal N).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"search.workers must be a whole number >= 1, not {n!r}")
    if command is not None:
        program = list(command)
    elif argv and argv[0] == sys.executable:
        program = []
    else:
        program = [sys.executable, "-c", _SEARCH_ENTRY]
    shared = [arg for arg in argv if not re.match(r"^\+{0,2}search\.workers=", arg)]
    quiet = [arg for arg in shared if not re.match(r"^\+{0,2}search\.progress=", arg)] + ["search.progress=false"]
    children: list[subprocess.Popen] = []

    def forward(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(n):
            arguments = (shared if index == 0 else quiet) + ["search.workers=1"]
            environment = {**os.environ, "AUTOFR_WORKER_INDEX": str(index), "AUTOFR_WORKERS": str(n)}
            try:
                children.append(subprocess.Popen(program + arguments, env=environment, start_new_session=True))
            except OSError:
                forward(signal.SIGTERM, None)
                for child in children:
                    child.wait()
                raise
        logger.info("started %d local workers (pids %s)", n, ", ".join(str(child.pid) for child in children))
        statuses = [child.wait() for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    statuses = [128 - status if status < 0 else status for status in statuses]
    failed = [(index, status) for index, status in enumerate(statuses) if status != 0]
    if failed:
        logger.error(
            "%d of %d workers failed: %s", len(failed), n, ", ".join(f"worker {i} exit {s}" for i, s in failed)
        )
        return failed[0][1]
    return 0
