"""Interrupting a generation subprocess part-way, for the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

import yaml

from helpers.specs import TINY_SPEC


def kill_after_models_written(cmd: Sequence[str], store: Path, count: int, timeout_s: float = 120) -> int | None:
    """Run ``cmd`` and SIGKILL it once ``store`` has at least ``count`` models written (status chunks).

    Returns how many were written when it was killed, or None if it ended first (or timed out, killed).
    """
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status_dir = Path(store) / "results" / "status" / "c"
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline and proc.poll() is None:
            done = len(os.listdir(status_dir)) if status_dir.exists() else 0
            if done >= count:
                proc.send_signal(signal.SIGKILL)
                return done
            time.sleep(0.01)
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def generate_and_kill(spec_file: Path, target: Path, at_least: int, timeout_s: float = 120) -> int | None:
    """``weightzoo generate spec_file --out target`` in a subprocess, SIGKILLed once at least ``at_least``
    models are written; how many were, or None if it finished first."""
    import sys

    return kill_after_models_written([sys.executable, "-m", "weightzoo.cli", "generate", str(spec_file), "--out",
                                      str(target), "--quiet"], target, at_least, timeout_s)


def grid_spec_with_reference(tmp_path: Path, epochs: int):
    """A 12-cell, 24-model phase grid (long enough to interrupt) written to ``tmp_path/spec.yaml``, and
    its zoo trained without interruption by the local backend: ``(spec_file, reference_zoo)``."""
    from generators.driver import generate

    spec = dict(TINY_SPEC, grid={"load": {"param": "width", "values": [4, 8, 12, 16]},
                                 "temperature": {"param": "batch_size", "values": [16, 32, 64]}}, epochs=epochs)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    return spec_file, generate(spec, tmp_path / "reference.zarr", progress=False)
