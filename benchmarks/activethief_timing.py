"""ActiveThief: one selection round against the training of that round's substitute (issue 5, item 4).

The setting of the requirement: MNIST; the pool is the 60,000 training images; 10,000 of them
are labelled (drawn at random, answered by the target: the registry small CNN trained
``--target-epochs`` epochs on ``--target-rows`` rows of the target_train half); the substitute
is trained on them with the ActiveThief recipe's default trainer (the registry small CNN,
20 epochs / at least 500 steps, soft labels) — that is the round's training time. Then every
selection strategy picks k = 1,000 of the 50,000 unlabelled rows with that substitute, the way
:func:`~modelsteal.attacks.extract` asks for them (calls of the recipe's query batch, 256 rows,
against the same substitute), timed from the first call to the last.

A round = scoring (the substitute's softmax on every pool row, which every strategy needs and
computes once per round: the same work for all, so measured once) + the strategy's own work
(measured per strategy, from a copy of the scored state; DeepFool is DFAL's own work). The
table gives both and their sum against the training. Queries to the target are in neither.

Both wall-clock and CPU seconds (this process, all threads) are recorded: on a shared machine the
CPU ratio is the steadier one. Writes ``benchmarks/results/activethief_timing.{json,md}``. About
10 minutes on 2 idle cores (the substitute's training is half of it).

    MODELSTEAL_DATA=/path/to/datasets python benchmarks/activethief_timing.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import modelsteal.attacks.recipes.activethief_pal_2020  # noqa: F401  (registers the recipe)
from modelsteal.attacks import AttackState, build_recipe
from modelsteal.attacks.activethief import SELECTIONS
from modelsteal.data import load_splits
from modelsteal.metrics import accuracy
from modelsteal.models import TrainConfig, build_model, predict_proba, train_model
from modelsteal.targets import TorchTarget

HERE = Path(__file__).resolve().parent


class Clock:
    """Wall-clock and CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.load0 = os.getloadavg()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        self.load = (self.load0 + os.getloadavg()[0]) / 2


def labelled_state(
    pool: np.ndarray,
    labelled: np.ndarray,
    answers: np.ndarray,
    substitute: torch.nn.Module,
    domain: tuple[float, float],
) -> AttackState:
    """The attacker's state at the start of the round: ``labelled`` rows asked, substitute trained."""
    state = AttackState(pool=pool, n_classes=answers.shape[1], input_shape=pool.shape[1:])
    state.domain = domain
    state.used[labelled] = True
    state.queried_x.append(pool[labelled])
    state.responses.append(answers)
    state.substitute = substitute
    return state


def select_round(strategy: Any, state: AttackState, *, k: int, batch: int, seed: int) -> np.ndarray:
    """One selection round of ``k`` rows in calls of ``batch``, as extract makes them."""
    rng = np.random.default_rng(seed)
    picked: list[np.ndarray] = []
    while (done := sum(len(p) for p in picked)) < k:
        proposal = strategy.propose(state, min(batch, k - done), rng)
        state.used[proposal.pool_index] = True
        state.queried_x.append(proposal.x)
        state.responses.append(np.zeros((len(proposal.x), state.n_classes)))  # not timed
        picked.append(proposal.pool_index)
    return np.concatenate(picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MODELSTEAL_DATA"))
    parser.add_argument("--labelled", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=1_000)
    parser.add_argument("--target-epochs", type=int, default=1)
    parser.add_argument("--target-rows", type=int, default=10_000)
    parser.add_argument("--strategies", nargs="+", choices=SELECTIONS, default=list(SELECTIONS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="6,000-row pool, 1,000 labelled, k = 100, target on 2,000 rows; not written",
    )
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("Set MODELSTEAL_DATA or pass --data-dir: the MNIST files are needed.")
    started = time.perf_counter()
    splits = load_splits("mnist", data_dir=args.data_dir, seed=0, ood=None)
    pool = np.concatenate([splits.target_train.X, splits.attacker_pool.X])  # the 60,000 images
    n_labelled, k, target_rows = args.labelled, args.k, args.target_rows
    if args.quick:
        pool = pool[np.random.default_rng(1).choice(len(pool), 6_000, replace=False)]
        n_labelled, k, target_rows = 1_000, 100, 2_000

    with Clock() as target_clock:
        model = train_model(
            build_model("cnn", splits.input_shape, splits.n_classes, seed=0),
            splits.target_train.X[:target_rows],
            splits.target_train.y[:target_rows],
            config=TrainConfig(epochs=args.target_epochs),
            seed=0,
        )
    target = TorchTarget(model, input_shape=splits.input_shape)
    target_acc = accuracy(splits.target_test.y, predict_proba(model, splits.target_test.X))
    print(f"target: test accuracy {target_acc:.4f} ({target_clock.wall:.0f} s)", flush=True)

    labelled = np.random.default_rng(args.seed).choice(len(pool), n_labelled, replace=False)
    answers = target.query(pool[labelled])
    recipe = build_recipe("activethief")  # the recipe's defaults: trainer, query batch
    with Clock() as train_clock:
        substitute = recipe.trainer.fit(
            pool[labelled],
            answers,
            input_shape=splits.input_shape,
            n_classes=splits.n_classes,
            seed=args.seed,
        )
    sub_acc = accuracy(splits.target_test.y, predict_proba(substitute, splits.target_test.X))
    print(
        f"training the substitute on {n_labelled} rows: {train_clock.wall:.1f} s wall, "
        f"{train_clock.cpu:.1f} s CPU (test accuracy {sub_acc:.4f})",
        flush=True,
    )
    # Scoring: the substitute's softmax on every pool row, once (k-center needs the labelled
    # rows' outputs too). A one-row k-center call on a scratch state makes the strategy score and
    # keep them; each strategy then starts from a copy of that state's notes.
    with Clock() as score_clock:
        predict_proba(substitute, pool)
    scratch = labelled_state(pool, labelled, answers, substitute, splits.domain)
    build_recipe("activethief", selection="kcenter").strategy.propose(
        scratch, 1, np.random.default_rng(0)
    )
    scored = {key: value for key, value in scratch.memo.items() if key != "activethief"}
    print(f"scoring the {len(pool)} pool rows: {score_clock.wall:.1f} s", flush=True)

    rows = []
    for selection in args.strategies:
        strategy = build_recipe("activethief", selection=selection).strategy
        state = labelled_state(pool, labelled, answers, substitute, splits.domain)
        state.memo.update(copy.deepcopy(scored))
        with Clock() as clock:
            picked = select_round(
                strategy, state, k=k, batch=recipe.query_batch_size, seed=args.seed
            )
        if len(np.unique(picked)) != k or np.isin(picked, labelled).any():
            raise RuntimeError(f"{selection}: the round did not pick {k} new unlabelled rows")
        wall = score_clock.wall + clock.wall
        cpu = score_clock.cpu + clock.cpu
        row = {
            "selection": selection,
            "own_wall_s": clock.wall,
            "own_cpu_s": clock.cpu,
            "round_wall_s": wall,
            "round_cpu_s": cpu,
            "ratio_wall": wall / train_clock.wall,
            "ratio_cpu": cpu / train_clock.cpu,
            "load": clock.load,
        }
        rows.append(row)
        print(
            f"{selection}: own {clock.wall:.1f} s; round {wall:.1f} s wall "
            f"({row['ratio_wall']:.2f} of training), {cpu:.1f} s CPU ({row['ratio_cpu']:.2f})",
            flush=True,
        )

    command = "python benchmarks/activethief_timing.py" + (" --quick" if args.quick else "")
    result = {
        "data": "mnist",
        "pool_rows": len(pool),
        "labelled_rows": n_labelled,
        "k": k,
        "query_batch": recipe.query_batch_size,
        "target": {
            "arch": "cnn",
            "epochs": args.target_epochs,
            "rows": min(target_rows, len(splits.target_train)),
            "test_accuracy": target_acc,
        },
        "substitute": {
            "arch": recipe.trainer.architecture(splits.input_shape),
            "epochs": recipe.trainer.config.epochs,
            "batch_size": recipe.trainer.config.batch_size,
            "min_steps": recipe.trainer.min_steps,
            "test_accuracy": sub_acc,
        },
        "train_wall_s": train_clock.wall,
        "train_cpu_s": train_clock.cpu,
        "train_load": train_clock.load,
        "score_wall_s": score_clock.wall,
        "score_cpu_s": score_clock.cpu,
        "strategies": rows,
        "all_faster_than_training": all(r["ratio_wall"] < 1 and r["ratio_cpu"] < 1 for r in rows),
        "seconds": time.perf_counter() - started,
        "command": command,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
    }
    text = _markdown(result)
    print(text)
    if not args.quick:
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        (out / "activethief_timing.json").write_text(json.dumps(result, indent=2))
        (out / "activethief_timing.md").write_text(text)


def _markdown(r: dict[str, Any]) -> str:
    sub = r["substitute"]
    lines = [
        f"One ActiveThief selection round on MNIST: pool {r['pool_rows']:,} rows, "
        f"{r['labelled_rows']:,} labelled, k = {r['k']:,} picked in calls of {r['query_batch']}. "
        f"Training the substitute ({sub['arch']}, {sub['epochs']} epochs / ≥ {sub['min_steps']} "
        f"steps, batch {sub['batch_size']}; test accuracy {sub['test_accuracy']:.3f}) on the "
        f"labelled rows took **{r['train_wall_s']:.1f} s** wall, {r['train_cpu_s']:.1f} s CPU "
        f"(load average {r['train_load']:.1f}). Scoring every pool row with the substitute (part "
        f"of every round, measured once): {r['score_wall_s']:.1f} s wall, "
        f"{r['score_cpu_s']:.1f} s CPU.",
        "",
        "| selection | own work s (wall) | round s (wall) | round ÷ training (wall) | "
        "round s (CPU) | round ÷ training (CPU) |",
        "|---|---|---|---|---|---|",
    ]
    for s in r["strategies"]:
        lines.append(
            f"| {s['selection']} | {s['own_wall_s']:.1f} | {s['round_wall_s']:.1f} | "
            f"{s['ratio_wall']:.2f} | {s['round_cpu_s']:.1f} | {s['ratio_cpu']:.2f} |"
        )
    verdict = "every" if r["all_faster_than_training"] else "NOT every"
    lines += [
        "",
        f"{verdict.capitalize()} strategy's round (scoring + own work) took less time than the "
        f"training, wall and CPU. {r['seconds']:.0f} s in all, "
        f"{r['machine']['torch_threads']} torch threads on {r['machine']['cpus']} cores. "
        f"Command: `{r['command']}`",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
