"""Coverage: every denoiser class in ``tests/reuse/zoo.py`` gets reusable units by rules, and reuse works.

One case per class (tiny random-init configs, 4 steps): an interval-1 schedule is bit-identical
to the model without hooks, FRDiff's uniform M=2 really reuses every unit (the accounting counts
it), two runs in a row are identical, and ``remove_schedule`` restores the model bit for bit
(see ``coverage_check.py``). ``bench/coverage.py`` writes the same results as the README table.
"""

from collections import Counter

import diffusers
import pytest
from diffusers.models.cache_utils import CacheMixin

from autofr.errors import UnsupportedModelError
from autofr.reuse import discover_units

from .coverage_check import check_denoiser
from .zoo import CASES, DISCOVERY_ONLY, NOT_RUN, UNSUPPORTED

RUN = [case for case in CASES if case.class_name not in UNSUPPORTED]


@pytest.mark.parametrize("case", RUN, ids=[case.class_name for case in RUN])
def test_reuse_is_exact_at_interval_1_and_really_reuses_at_m2(case):
    result = check_denoiser(
        case.class_name, case.build(), case.inputs(), case.sample, case.timestep, case.scale, measure=False
    )
    assert result.passed, result.error
    assert sum(result.units_by_kind.values()) >= 2


@pytest.mark.parametrize("class_name", sorted(DISCOVERY_ONLY))
def test_units_are_found_where_the_forward_is_not_run(class_name):
    kinds = Counter(unit.kind for unit in discover_units(getattr(diffusers, class_name)(**DISCOVERY_ONLY[class_name])))
    assert kinds["feed_forward"] >= 1 and kinds["self_attention"] + kinds["joint_attention"] >= 1


@pytest.mark.parametrize("class_name", sorted(UNSUPPORTED))
def test_a_class_without_units_names_the_setting_to_use(class_name):
    case = next(case for case in CASES if case.class_name == class_name)
    with pytest.raises(UnsupportedModelError, match="model.units.include"):
        discover_units(case.build())


def test_the_zoo_covers_every_cache_mixin_denoiser_and_the_unet_families():
    covered = {case.class_name for case in RUN}
    cache_mixin = {
        name
        for name in dir(diffusers)
        if isinstance(getattr(diffusers, name, None), type)
        and issubclass(getattr(diffusers, name), CacheMixin)
        and getattr(diffusers, name) is not CacheMixin
    }
    denoisers = {name for name in cache_mixin if "ControlNet" not in name}  # ControlNets are not denoisers
    assert not sorted(denoisers - covered - set(NOT_RUN)), "CacheMixin denoisers missing from the zoo"
    assert not (denoisers & set(NOT_RUN)) - set(DISCOVERY_ONLY), "a CacheMixin class is neither run nor discovered"
    for unet in (
        "UNet2DModel",
        "UNet2DConditionModel",
        "UNet3DConditionModel",
        "UNetSpatioTemporalConditionModel",
        "UNetMotionModel",
        "I2VGenXLUNet",
    ):
        assert unet in covered
    assert len(covered) >= 40
