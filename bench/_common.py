"""What the bench scripts share: reopening a finished bench study and its model, protocol and measures."""

from __future__ import annotations

from pathlib import Path


def open_bench_study(model: str, study_name: str, workdir: Path, *extra: str):
    """``(config, study)`` of a finished bench study kept in ``workdir`` (journal and caches)."""
    from autofr.cli._config import compose
    from autofr.config import StudyConfig
    from autofr.search.study import open_existing

    workdir = Path(workdir)
    if (workdir / model / "journal.log").exists():  # bench/target_search.py keeps one folder per model
        workdir = workdir / model
    if not (workdir / "journal.log").exists():
        raise SystemExit(f"{workdir / 'journal.log'} does not exist: give the --workdir of a finished bench run")
    config = StudyConfig.from_hydra(
        compose(
            "config",
            [
                f"model={model}",
                f"study_name={study_name}",
                f"storage.journal_path={Path(workdir) / 'journal.log'}",
                f"tracking.uri=sqlite:///{Path(workdir) / 'mlflow.db'}",
                f"cache_dir={Path(workdir) / 'cache'}",
                *extra,
            ],
        )
    )
    return config, open_existing(config.storage, config.study_name)


def model_and_measures(config):
    """``(pipe, protocol, measures)`` of a study config."""
    from autofr.search.measures import StudyMeasures
    from autofr.search.study import load_model, protocol_for

    return load_model(config.model), protocol_for(config), StudyMeasures.resolve(config.quality, config.model)
