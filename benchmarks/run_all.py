"""Run every benchmark (``make bench``); each script writes into ``benchmarks/results/``.

The data-set benchmarks need ``$MODELSTEAL_DATA`` (see the README). Total: about an hour on two
cores. Run a single script for a single figure; each one's command is in docs/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# mnist_knockoff.py trains the MNIST target that server_load.py then serves;
# defenses.py --parts runs modelguard_w.py, modelguard_s.py, modelguard_s_memo.py and mad.py.
SCRIPTS = [
    ["mnist_knockoff.py"],
    ["defenses_mnist.py"],
    ["defenses.py", "--parts"],
    ["server_load.py", "--model", "runs/bench_mnist/mnist_cnn.pt"],
    ["exact_extraction.py"],
    ["gradient_matching.py"],
    ["synthetic_queries.py", "--seeds", "0", "1", "2", "3", "4"],
    ["adaptive_recovery.py"],
    ["knockoff_adaptive.py"],
    ["activethief.py", "--data", "digits", "--seeds", "0", "1", "2"],
    ["activethief_timing.py"],
    ["dfal_classes.py"],
    ["multiplicity.py"],
    ["imitation_examples.py"],
    ["imitation_side_information.py"],
    ["imitation_mnist.py"],
]

if __name__ == "__main__":
    failed = [
        " ".join(s)
        for s in SCRIPTS
        if subprocess.run([sys.executable, str(HERE / s[0]), *s[1:]]).returncode
    ]
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
