"""The README's Python example runs as written (on zoos built here with the README's own commands)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    env = dict(os.environ, WEIGHTZOO_CACHE=str(tmp_path / "cache"))
    for cmd in (["demo", "--quick", "--out", "runs/demo", "--quiet"],
                ["generate", "tree_quick", "--out", "runs/tree.zarr", "--quiet"]):
        r = subprocess.run([sys.executable, "-m", "weightzoo.cli", *cmd], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"README example failed:\n{code}\n{r.stderr}"
