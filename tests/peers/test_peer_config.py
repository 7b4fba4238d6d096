"""``search.peers``: validated with the other keys, before anything is loaded."""

from __future__ import annotations

import pytest

from autofr import ConfigError
from autofr.cli import search as search_cli
from autofr.cli._config import compose
from autofr.config import StudyConfig
from autofr.peers import PEER_METHODS


def settings(*overrides: str):
    return StudyConfig.from_hydra(compose("config", list(overrides))).search


@pytest.mark.parametrize(
    "value, methods",
    [
        (None, tuple(PEER_METHODS)),
        ("auto", tuple(PEER_METHODS)),
        ("off", ()),
        ("[]", ()),
        ("[mag_cache,dbcache]", ("mag_cache", "dbcache")),
    ],
)
def test_peers_default_to_every_method_and_take_off_or_a_list(value, methods):
    search = settings(*([f"search.peers={value}"] if value else []))
    assert search.peer_methods == methods


@pytest.mark.parametrize(
    "value, fragment",
    [("everything", "must be auto, off or a list"), ("[mag_cache,teacache]", "unknown peer method 'teacache'")],
)
def test_a_bad_peers_value_is_one_line_and_exit_code_2(value, fragment, capsys, tmp_path):
    with pytest.raises(ConfigError, match=fragment) as error:
        settings(f"search.peers={value}")
    assert "\n" not in str(error.value)
    code = search_cli.main(
        [
            f"search.peers={value}",
            f"storage.journal_path={tmp_path / 'journal.log'}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"out_dir={tmp_path / 'out'}",
        ]
    )
    assert code == 2 and fragment in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "nothing is written"
