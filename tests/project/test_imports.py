import subprocess
import sys


def test_import_zoo_does_not_pull_in_training_code():
    code = ("import sys, zoo; heavy = [m for m in ('generators', 'weightnets', 'lightning', 'matplotlib', 'ray') "
            "if m in sys.modules]; print(heavy); assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
