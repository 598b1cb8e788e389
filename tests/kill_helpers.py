"""Kill a running ``weightzoo generate`` midway (SIGKILL), for the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def generate_and_kill(spec_file: Path, target: Path, at_least: int, timeout: float = 120.0) -> int | None:
    """Run ``weightzoo generate spec_file --out target`` in a subprocess and SIGKILL it as soon as at least
    ``at_least`` models have their status written. Returns how many had, or None if it finished first."""
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", "generate", str(spec_file), "--out", str(target),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status_dir = target / "results" / "status" / "c"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        done = len(os.listdir(status_dir)) if status_dir.exists() else 0
        if done >= at_least:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return done
        time.sleep(0.005)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return None
