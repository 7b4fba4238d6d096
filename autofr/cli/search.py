"""``autofr-search``: run an Auto-FR study (a Hydra app driving Optuna).

    autofr-search                                   # embedded digits_unet, 40 trials, local storage + MLflow
    autofr-search model=digits_dit sampler=nsga2 search.n_trials=100
    autofr-search search.target=3%                  # the fastest schedule within 3% of full compute's FID
    autofr-search search.workers=4                  # 4 local worker processes on one study
    autofr-search -m hydra/launcher=slurm storage=postgres +worker='range(8)'   # 8 SLURM jobs on one study
    autofr-search study=sd15 model.path=/models/stable-diffusion-v1-5

Re-running the same command resumes the study: same Optuna study, same MLflow parent run.
"""

from __future__ import annotations

import sys
import time

from autofr.cli._config import compose, progress_bar, run_cli
from autofr.cli._launch import hydra_multirun, run_local_workers
from autofr.config import StudyConfig


def search(config: StudyConfig) -> int:
    """Run one worker of the study and, unless ``config.worker_only``, evaluate the peers, confirm and summarise."""
    from autofr.report import study_summary, write_study_report
    from autofr.report.text import summary_text
    from autofr.search.front import StudyAnswer
    from autofr.search.study import AutoFRStudy

    show = config.search.progress
    study = AutoFRStudy.prepare(config)  # everything that can fail on bad input fails here
    print("\n".join(study.describe()))
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
    if config.worker_only:
        return 0
    study.wait_for_running_trials()

    def bar(items, desc):
        return progress_bar(items, desc, enabled=show)

    peers = study.evaluate_peers(progress=bar)
    if config.search.peer_methods:
        print(f"peers: {peers.describe()}")
    confirmed = study.confirm(progress=bar)
    records = study.records()
    answer = StudyAnswer.of(records)
    paths = write_study_report(records, config.out_dir)
    study.tracker.log_study_summary(study.parent_run, records, paths, study_summary(records, answer))
    print()
    print(summary_text(records, answer=answer))
    spent = study.confirm_seconds
    print(
        f"\ntime: trials {searched_s / 60:.1f} min; FID of {len(confirmed)} confirmed {spent.get('fid', 0) / 60:.1f} min; "
        f"their timing {spent.get('timing', 0) / 60:.1f} min"
    )
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
            run_local_workers(overrides, config.search.workers)
            return search(StudyConfig.from_hydra(compose("config", [*overrides, "search.workers=1"])))
        return search(config)

    return run_cli(body, argv)


def _with_worker_only(cfg, worker_only: bool) -> StudyConfig:
    import dataclasses

    return dataclasses.replace(StudyConfig.from_hydra(cfg), worker_only=worker_only)


if __name__ == "__main__":
    sys.exit(main())
