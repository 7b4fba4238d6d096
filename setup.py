"""Build hook: the repository's top-level ``conf/`` and ``studies/`` ship inside the built package.

All metadata is in pyproject.toml. ``conf/`` (Hydra config groups) and ``studies/`` (study presets,
the ``study`` group; ``conf/study`` is a link to it) stay at the top of the repository, where a
checkout and an editable install read them. A built wheel carries them as ``autofr/_conf/`` with the
presets in ``autofr/_conf/study/``, which :func:`autofr.config.conf_dir` finds when there is no
checkout.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PACKAGED_CONF = Path("autofr") / "_conf"


class build_py_with_configs(build_py):
    """``build_py`` that also copies ``conf/`` and ``studies/`` into ``autofr/_conf/``."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's conf/ itself
            return
        for folder in ("conf", "studies"):
            if not (ROOT / folder).is_dir():
                raise SystemExit(
                    f"cannot build autofr: {ROOT / folder} is missing (build from a checkout or the sdist)"
                )
        target = Path(self.build_lib) / PACKAGED_CONF
        if target.exists():
            shutil.rmtree(target)
        # conf/study is a link to ../studies: copy the presets themselves, never the link
        shutil.copytree(
            ROOT / "conf", target, ignore=lambda folder, names: ["study"] if Path(folder) == ROOT / "conf" else []
        )
        shutil.copytree(ROOT / "studies", target / "study")


setup(cmdclass={"build_py": build_py_with_configs})
