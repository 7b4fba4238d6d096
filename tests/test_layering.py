"""The layering a user notices: the light parts of autofr start without torch and diffusers.

The import contract itself (pyproject.toml, ``[tool.importlinter]``) is checked by ``lint-imports`` in CI.
"""

import subprocess
import sys


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m for m in ('torch', 'diffusers') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_execution_and_the_package_load_neither_torch_nor_diffusers():
    assert _loaded_after("import autofr.execution") == set()
    assert _loaded_after("import autofr; autofr.ConfigError") == set()


def test_the_public_names_load_on_first_use():
    assert "diffusers" in _loaded_after("import autofr; autofr.apply_schedule")
