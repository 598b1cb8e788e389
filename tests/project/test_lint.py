"""ruff keeps the packages clean: pyflakes (F), import order (I), no private member access (SLF001) and
no private imports across modules (PLC2701); the rule sets live in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean_on_the_packages_scripts_and_tests():
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    r = subprocess.run([exe, "check", "--no-cache", "kernels", "zoo", "generators", "weightnets", "weightzoo",
                        "scripts", "tests"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
