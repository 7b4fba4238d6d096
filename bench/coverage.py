"""The coverage table: which diffusers denoiser classes autofr schedules, with which units.

    python bench/coverage.py            # prints the table and rewrites it in README.md
    python bench/coverage.py --no-write

For every class in ``tests/reuse/zoo.py`` (tiny random-init configs) it runs the checks of
``tests/reuse/coverage_check.py`` (interval-1 bit-exact, uniform M=2 reuses every unit at every unit level the
class has: sub-layers, blocks, the whole stack; runs repeat, remove restores) and measures the share of a forward's MACs that sits in reusable units (the most
reuse can save, at the tiny config's shapes: real models differ). The table goes between the
``coverage-table`` markers of the README.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reuse.coverage_check import check_denoiser  # noqa: E402
from tests.reuse.zoo import CASES, DISCOVERY_ONLY, NOT_RUN, UNSUPPORTED  # noqa: E402

BEGIN, END = "<!-- coverage-table:begin -->", "<!-- coverage-table:end -->"


def rows() -> list[dict]:
    from collections import Counter

    import diffusers
    from diffusers.models.cache_utils import CacheMixin

    from autofr.reuse import discover_units

    table = []
    for case in sorted(CASES, key=lambda c: c.class_name):
        result = check_denoiser(case.class_name, case.build(), case.inputs(), case.sample, case.timestep, case.scale)
        status = (
            "passes"
            if result.passed
            else (
                f"unsupported: {UNSUPPORTED[case.class_name]}"
                if case.class_name in UNSUPPORTED
                else f"fails: {result.error}"
            )
        )
        share = (
            f"{100 * result.reusable_share:.0f}%"
            if result.reusable_share is not None
            else ("n/a (the FLOP counter cannot trace it)" if result.cost_note else "n/a")
        )
        table.append(
            {
                "class": case.class_name,
                "kinds": result.units_by_kind,
                "levels": result.levels,
                "share": share,
                "status": status,
                "cache_mixin": issubclass(getattr(diffusers, case.class_name), CacheMixin),
            }
        )
    for name, reason in sorted(NOT_RUN.items()):
        kinds = {}
        if name in DISCOVERY_ONLY:
            kinds = dict(Counter(u.kind for u in discover_units(getattr(diffusers, name)(**DISCOVERY_ONLY[name]))))
        status = f"units found, not run: {reason}" if kinds else f"not run: {reason}"
        table.append(
            {
                "class": name,
                "kinds": kinds,
                "levels": (),
                "share": "n/a",
                "status": status,
                "cache_mixin": issubclass(getattr(diffusers, name), CacheMixin),
            }
        )
    return table


def markdown(table: list[dict], seconds: float) -> str:
    import diffusers

    passing = sum(row["status"] == "passes" for row in table)
    lines = [
        f"{passing} of {len(table)} denoiser classes of diffusers {diffusers.__version__} pass "
        f"(`python bench/coverage.py`, {seconds:.0f} s on one CPU thread; tiny random-init configs; "
        "&#9679; = has diffusers' `CacheMixin`):",
        "",
        "| class | units by kind | levels checked | reusable MACs | result |",
        "|---|---|---|---:|---|",
    ]
    for row in table:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(row["kinds"].items())) or "none"
        levels = " + ".join(row["levels"]) or "-"
        mark = " &#9679;" if row["cache_mixin"] else ""
        lines.append(f"| `{row['class']}`{mark} | {kinds} | {levels} | {row['share']} | {row['status']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    began = time.perf_counter()
    text = markdown(rows(), time.perf_counter() - began)
    print(text)
    if not args.no_write:
        readme = ROOT / "README.md"
        content = readme.read_text()
        if BEGIN not in content:
            raise SystemExit(f"README.md has no {BEGIN} marker: add the markers where the table goes")
        content = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), f"{BEGIN}\n{text}\n{END}", content, flags=re.S)
        readme.write_text(content)
        print(f"\nwrote the table into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
