"""Run every benchmark script in this folder (``make bench``); each writes into results/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != "run_all.py")
    failed = [s.name for s in scripts if subprocess.run([sys.executable, str(s)]).returncode]
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
