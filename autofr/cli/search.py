"""``autofr-search``: run an Auto-FR study (a Hydra app driving Optuna).

    autofr-search                                   # embedded digits_unet, 40 trials, local storage + MLflow
    autofr-search model=digits_dit sampler=nsga2 search.n_trials=100
    autofr-search search.target=3%                  # the fastest schedule within 3% of full compute's FID
    autofr-search search.workers=4                  # 4 local worker processes on one study (every stage)
    autofr-search search.max_device_hours=2         # the whole study within 2 device-hours (cuts what it must)
    autofr-search -m hydra/launcher=slurm storage=postgres +worker='range(8)'   # 8 SLURM jobs on one study
    autofr-search study=sd15 model.path=/models/stable-diffusion-v1-5

Every worker takes part in every stage: trials, then the peers, FID confirmation (in sample slices) and
the timing run, as work items in the study's storage. The plan (samples, device-hours and wall time per
stage) is printed first; ``autofr-plan`` prints it without running anything. Re-running the same command
resumes the study: same Optuna study, same MLflow parent run, unfinished work items.
"""

from __future__ import annotations

import sys
import time

from autofr.cli._config import compose, run_cli
from autofr.cli._launch import hydra_multirun, run_local_workers
from autofr.config import StudyConfig


def search(config: StudyConfig, spawn: list[str] | None = None) -> int:
    """Run one worker of the study: its trials, then its part of every later stage (peers, FID
    confirmation, timing: work items shared with the other workers); unless ``config.worker_only``,
    print the plan first and the summary last. ``spawn``: the overrides of ``search.workers`` local
    worker processes to run (and wait for) once the plan is printed."""
    from autofr.report import study_summary, write_study_report
    from autofr.report.text import summary_text
    from autofr.search.front import StudyAnswer
    from autofr.search.records import StudyInfo
    from autofr.search.study import AutoFRStudy

    study = AutoFRStudy.prepare(config)  # everything that can fail on bad input fails here
    if not config.worker_only:
        print("\n".join(study.describe()))
        print("\n".join(study.plan(workers=config.search.workers).lines()))
    if spawn is not None:
        run_local_workers(spawn, config.search.workers)
    created = study.open()
    print(
        f"study {config.study_name!r} ({'new' if created else 'resumed'}) in {study.where}; "
        f"MLflow parent run {study.parent_run}"
    )
    objective = study.objective()
    if objective.describe():
        print(objective.describe())
    began = time.perf_counter()
    study.run(objective)
    searched_s = time.perf_counter() - began
    began = time.perf_counter()
    ran = study.run_stages(show=print)  # one line per stage as items finish: the study's progress
    staged_s = time.perf_counter() - began
    if config.worker_only:
        return 0
    records = study.records()
    answer = StudyAnswer.of(records)
    paths = write_study_report(records, config.out_dir)
    study.tracker.log_study_summary(study.parent_run, records, paths, study_summary(records, answer))
    print()
    print(summary_text(records, answer=answer))
    info = StudyInfo.read(study.study)
    print(
        f"\ntime here: trials {searched_s / 60:.1f} min; later stages {staged_s / 60:.1f} min "
        f"({ran} work items in this process)"
    )
    if info.timing_device:
        print(f"confirmed points timed on {info.timing_device}")
    for cut in (info.budget or {}).get("cuts") or ():
        print(f"cut by search.max_device_hours: {cut}")
    print(f"\nresults: {config.out_dir}")
    print(f"MLflow UI: {study.tracker.ui_command()}")
    print(f"export the schedule: autofr-export study_name={config.study_name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    overrides = [a for a in argv if not a.startswith("-") and not a.startswith("hydra")]

    def body(_argv):
        if any(a in ("-m", "--multirun") for a in argv):
            return hydra_multirun(argv, lambda cfg, worker_only: search(_with_worker_only(cfg, worker_only)))
        config = StudyConfig.from_hydra(compose("config", overrides))
        if config.search.workers > 1:
            return search(config, spawn=overrides)
        return search(config)

    return run_cli(body, argv)


def _with_worker_only(cfg, worker_only: bool) -> StudyConfig:
    import dataclasses

    return dataclasses.replace(StudyConfig.from_hydra(cfg), worker_only=worker_only)


if __name__ == "__main__":
    sys.exit(main())
