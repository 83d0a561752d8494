"""Run every benchmark (``make bench``); each script writes into ``benchmarks/results/``.

The data-set benchmarks need ``$MODELSTEAL_DATA`` (see the README). Total: about 20 minutes on
two cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# defenses.py runs modelguard_w.py, modelguard_s.py and mad.py itself.
SCRIPTS = ["mnist_knockoff.py", "defenses_mnist.py", "defenses.py", "exact_extraction.py"]

if __name__ == "__main__":
    failed = [s for s in SCRIPTS if subprocess.run([sys.executable, str(HERE / s)]).returncode]
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
