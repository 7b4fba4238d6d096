import math

import pytest

from autofr.errors import ConfigError
from autofr.quality import available_measures, build_measure, format_fidelity_table, proxy_fidelity


def test_rank_correlations_match_hand_computed_values():
    fid = [1.0, 2.0, 3.0, 4.0, 5.0]
    rows = proxy_fidelity(
        {"same_order": [10, 20, 30, 40, 50], "reversed": [5, 4, 3, 2, 1], "two_swaps": [2, 1, 4, 3, 5]},
        fid,
        proxy_seconds={"same_order": 0.5, "reversed": [1.0, 3.0], "two_swaps": 0.25},
        fid_seconds=10.0,
    )
    by_name = {row["proxy"]: row for row in rows}
    assert by_name["same_order"]["spearman"] == pytest.approx(1.0)
    assert by_name["same_order"]["kendall"] == pytest.approx(1.0)
    assert by_name["reversed"]["spearman"] == pytest.approx(-1.0)
    assert by_name["reversed"]["kendall"] == pytest.approx(-1.0)
    # d = (-1, 1, -1, 1, 0): rho = 1 - 6 * 4 / (5 * 24) = 0.8; 8 concordant, 2 discordant pairs: tau = 0.6
    assert by_name["two_swaps"]["spearman"] == pytest.approx(0.8)
    assert by_name["two_swaps"]["kendall"] == pytest.approx(0.6)
    assert by_name["same_order"]["cost_ratio"] == pytest.approx(20.0)
    assert by_name["reversed"]["cost_ratio"] == pytest.approx(5.0)
    assert by_name["two_swaps"]["n"] == 5


def test_unstable_schedules_are_left_out_and_degenerate_columns_give_nan():
    rows = proxy_fidelity({"p": [1, 2, float("nan"), 4], "flat": [1, 1, 1, 1]}, [1, 2, 3, float("inf")])
    assert rows[0]["n"] == 2 and math.isnan(rows[0]["spearman"])
    assert math.isnan(rows[1]["kendall"]) and math.isnan(rows[1]["cost_ratio"])
    with pytest.raises(ValueError, match="3 FID values"):
        proxy_fidelity({"short": [1, 2]}, [1, 2, 3])


def test_the_table_is_markdown_with_one_row_per_proxy():
    rows = proxy_fidelity(
        {"ssim": [0.1, 0.2, 0.3], "psnr": [3, 1, 2]}, [1, 2, 3], fid_seconds=8, proxy_seconds={"ssim": 2}
    )
    table = format_fidelity_table(rows, fid_name="FID-2k")
    lines = table.splitlines()
    assert lines[0].startswith("| proxy |") and "FID-2k" in lines[0]
    assert len(lines) == 4 and lines[2].startswith("| ssim | 3 | 1.000") and "4.0x" in lines[2]
    assert "n/a" in lines[3]


def test_measures_are_built_by_config_name():
    assert {"fid", "kid", "kid_small", "latent_mse", "psnr", "ssim"} <= set(available_measures())
    assert build_measure("psnr", max_db=80.0).max_db == 80.0
    with pytest.raises(ConfigError, match="unknown quality measure 'lpips'"):
        build_measure("lpips")
    with pytest.raises(ConfigError, match="max_dB"):
        build_measure("psnr", max_dB=80.0)
