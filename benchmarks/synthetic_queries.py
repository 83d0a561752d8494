"""JBDA and JBDA-TR vs uniform-noise queries at equal budgets on a digits MLP target.

The target is an MLP trained on ``load_splits("digits", seed=0, pool_fraction=0.7)``'s
target_train part (inputs in [0, 1]). JBDA and JBDA-TR start from a seed set of 150 rows drawn
from the attacker pool; the uniform-noise baseline draws every query uniformly from [0, 1]^64.
Each strategy runs once per seed up to the largest budget and is measured at every budget on the
target's test split (fidelity: agreement with the target's labels; accuracy: against the true
labels). With 150 seeds the budgets 150 (the seed set alone), 300, 600, 1200 and 2000 are round ends of JBDA's schedule
(150 → 300 → 600 → 1200 by doubling, then κ = 400 per round), so no evaluation cuts a round.
Natural-pool KnockoffNets queries are shown as a reference where the pool (943 rows) suffices.

Writes ``benchmarks/results/synthetic_queries.{json,md}``. About 3 minutes on 2 cores.

    python benchmarks/synthetic_queries.py [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

import modelsteal.attacks.recipes.jbda_papernot_2017
import modelsteal.attacks.recipes.jbda_tr_juuti_2019  # noqa: F401  (registers the recipes)
from modelsteal.attacks import Recipe, build_recipe, extract
from modelsteal.attacks.recovery import identity, top1
from modelsteal.attacks.synthetic import UniformNoise, jbda_rounds
from modelsteal.attacks.training import SubstituteTrainer
from modelsteal.data import load_splits
from modelsteal.metrics import accuracy
from modelsteal.models import TrainConfig, build_model, predict_proba, train_model
from modelsteal.targets import TorchTarget

HERE = Path(__file__).resolve().parent
SEED_SIZE = 150
BUDGETS = [150, 300, 600, 1200, 2000]


def noise_recipe(hard_labels: bool) -> Recipe:
    return Recipe(
        name="uniform_noise",
        strategy=UniformNoise(),
        recovery=top1() if hard_labels else identity(),
        trainer=SubstituteTrainer(config=TrainConfig(epochs=20)),
    )


def attacks(quick: bool) -> dict[str, tuple[Recipe, list[int]]]:
    budgets = BUDGETS[:3] if quick else BUDGETS
    return {
        "JBDA (hard labels)": (build_recipe("jbda", seed_size=SEED_SIZE), budgets),
        "JBDA-TR (soft labels)": (build_recipe("jbda_tr", seed_size=SEED_SIZE), budgets),
        "JBDA-TR (hard labels)": (
            build_recipe("jbda_tr", seed_size=SEED_SIZE, hard_labels=True),
            budgets,
        ),
        "uniform noise (hard labels)": (noise_recipe(True), budgets),
        "uniform noise (soft labels)": (noise_recipe(False), budgets),
        "natural pool, KnockoffNets (soft; reference)": (build_recipe("knockoff"), budgets[:3]),
    }


def label_spread(responses: np.ndarray, upto: int) -> dict[str, float]:
    """How many classes the target's answers cover among the first ``upto`` queries."""
    counts = np.bincount(responses[:upto].argmax(axis=1), minlength=responses.shape[1])
    return {"classes_seen": int((counts > 0).sum()), "top_class_share": counts.max() / upto}


def label_flips(responses: np.ndarray, ends: list[int]) -> list[float]:
    """For each doubling round (point i of S augmented into row start + i), the share of new
    rows the target labels differently from their parent."""
    labels = responses.argmax(axis=1)
    shares = []
    for start, end in pairwise(ends):
        if end - start != start or end > len(labels):
            break
        shares.append(float(np.mean(labels[start:end] != labels[: end - start])))
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="smoke run; results not written")
    args = parser.parse_args()
    started = time.perf_counter()

    splits = load_splits("digits", seed=0, pool_fraction=0.7)
    model = build_model("mlp", splits.input_shape, splits.n_classes, seed=0)
    model = train_model(
        model, splits.target_train.X, splits.target_train.y, config=TrainConfig(epochs=30), seed=0
    )
    target = TorchTarget(model, input_shape=splits.input_shape)
    test_x, test_y = splits.target_test.X, splits.target_test.y
    target_acc = accuracy(test_y, predict_proba(model, test_x))
    eval_target = target.query(test_x)
    print(
        f"target test accuracy {target_acc:.4f}; train {len(splits.target_train)}, "
        f"pool {len(splits.attacker_pool)}, test {len(test_y)}",
        flush=True,
    )

    runs, flips = [], {}
    for name, (recipe, budgets) in attacks(args.quick).items():
        for seed in args.seeds:
            t0 = time.perf_counter()
            result = extract(
                target,
                recipe,
                pool=splits.attacker_pool.X,
                budget=budgets[-1],
                seed=seed,
                schedule=budgets,
                eval_x=test_x,
                eval_y=test_y,
                eval_target=eval_target,
                domain=splits.domain,
            )
            for record in result.history:
                q = int(record["queries"])
                runs.append(
                    {
                        "attack": name,
                        "seed": seed,
                        "queries": q,
                        "fidelity": record["fidelity"],
                        "accuracy": record["accuracy"],
                        **label_spread(result.responses, q),
                    }
                )
            if name.startswith("JBDA"):
                ends = jbda_rounds(budgets[-1], SEED_SIZE)
                flips.setdefault(name, []).append(label_flips(result.responses, ends))
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.1f}s", flush=True)

    summary = []
    for name, (_, budgets) in attacks(args.quick).items():
        for q in budgets:
            rows = [r for r in runs if r["attack"] == name and r["queries"] == q]
            entry = {"attack": name, "queries": q, "n_seeds": len(rows)}
            for key in ("fidelity", "accuracy", "classes_seen", "top_class_share"):
                values = np.array([r[key] for r in rows], dtype=float)
                entry[key] = {"mean": values.mean(), "std": values.std(ddof=1)}
            summary.append(entry)

    ends = jbda_rounds(BUDGETS[-1], SEED_SIZE)
    rounds = {"ends": ends, "sizes": np.diff([0, *ends]).tolist()}
    seconds = time.perf_counter() - started
    result_json = {
        "target_test_accuracy": target_acc,
        "split": {
            "data": "digits",
            "seed": 0,
            "pool_fraction": 0.7,
            "sizes": {
                "target_train": len(splits.target_train),
                "attacker_pool": len(splits.attacker_pool),
                "target_test": len(test_y),
            },
        },
        "seed_size": SEED_SIZE,
        "jbda_rounds": rounds,
        "summary": summary,
        "label_flips_per_doubling_round": flips,
        "runs": runs,
        "seconds": seconds,
        "command": "python benchmarks/synthetic_queries.py --seeds "
        + " ".join(map(str, args.seeds)),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    lines = [
        f"Digits MLP target, test accuracy {target_acc:.4f}; seed set {SEED_SIZE} pool rows; "
        f"seeds {args.seeds} (mean ± std).",
        "",
        f"JBDA / JBDA-TR round ends: {rounds['ends']}; rows per round: {rounds['sizes']}.",
        "",
        "| attack | queries | fidelity | accuracy | classes in answers | top class share |",
        "|---|---|---|---|---|---|",
    ]
    for e in summary:
        f, a, c, t = (e[k] for k in ("fidelity", "accuracy", "classes_seen", "top_class_share"))
        lines.append(
            f"| {e['attack']} | {e['queries']} | {f['mean']:.3f} ± {f['std']:.3f} | "
            f"{a['mean']:.3f} ± {a['std']:.3f} | {c['mean']:.1f} | {t['mean']:.2f} |"
        )
    lines += [
        "",
        "Share of new rows in each doubling round (150→300, 300→600, 600→1200) that the target "
        "labels differently from their parent row (mean over seeds):",
        "",
        "| attack | round 1 | round 2 | round 3 |",
        "|---|---|---|---|",
    ]
    for name, per_seed in flips.items():
        means = np.mean(np.array(per_seed), axis=0)
        lines.append(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    lines += ["", f"{seconds:.0f} s on {torch.get_num_threads()} threads."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        (out / "synthetic_queries.json").write_text(json.dumps(result_json, indent=2))
        (out / "synthetic_queries.md").write_text(text)


if __name__ == "__main__":
    main()
