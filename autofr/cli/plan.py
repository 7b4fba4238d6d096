"""``autofr-plan``: what an ``autofr-search`` command will cost, before it runs; writes nothing.

    autofr-plan                                     # the default study on one worker
    autofr-plan search.workers=4                    # wall time with 4 workers
    autofr-plan study=flux_dev model.path=/models/flux search.max_device_hours=20

Takes the same overrides as ``autofr-search`` and checks them the same way (config, device, quality
measures, storage, tracking: a bad input is one line and exit code 2), loads the model, times one
batch of full compute, and prints per stage the samples, the device-hours and the wall time for the
configured number of workers (the model behind the figures: :mod:`autofr.search.plan`). With
``search.max_device_hours`` it also prints what the budget would cut. No study, run or file is created.
"""

from __future__ import annotations

import sys

from autofr.cli._config import cli_main, compose
from autofr.config import StudyConfig


def plan(config: StudyConfig) -> int:
    """Print the plan of ``config``'s study (see the module docstring)."""
    from autofr.search.plan import DeviceBudget
    from autofr.search.study import AutoFRStudy

    study = AutoFRStudy.prepare(config)  # validates everything autofr-search validates; writes nothing
    print("\n".join(study.describe()))
    estimate = study.plan(workers=config.search.workers)
    print("\n".join(estimate.lines()))
    if config.search.max_device_hours is not None:
        budget = DeviceBudget.fit(config, estimate, study.peer_count())
        if budget.cuts:
            print(f"search.max_device_hours={config.search.max_device_hours:g} cuts:")
            print("\n".join(f"  {cut}" for cut in budget.cuts))
        else:
            print(f"fits search.max_device_hours={config.search.max_device_hours:g}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main(__doc__, lambda argv: plan(StudyConfig.from_hydra(compose("config", argv))), argv)


if __name__ == "__main__":
    sys.exit(main())
