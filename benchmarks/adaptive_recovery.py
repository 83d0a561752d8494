"""How close adaptive recoveries get to the clean vectors, defense by defense; m-QPI's leak.

Target: an MLP trained on ``load_splits("digits", seed=0, pool_fraction=0.7)``'s target part.
The attacker's query set is the whole attacker pool (one query per row). For each defense
(Reverse Sigmoid with its defaults, MAD with the argmax oracle and ε = 1, ModelGuard-W ε = 1,
ModelGuard-S ε = 1, each a fresh instance), the recovery distance mean ‖ỹ − y‖ (ℓ2 and ℓ1) of:

- ``raw``: the returned vectors themselves (the naive attack);
- ``pbayes``: partial Bayes, table centred on the returned vectors (K = 20, s = 8·C, ℓ1, τ = 0.01);
- ``pbayes_refine3``: the same with 3 re-centred rounds (our extension);
- ``pbayes_substitute``: centred on a naive substitute's predictions on the queried inputs;
- ``substitute_top1``: no table, the predictions themselves of a substitute trained on the top-1
  class of the returned vectors (one-hot targets) — the baseline for the next two rows;
- ``pbayes_substitute_top1``: partial Bayes centred on that substitute's predictions;
- ``pbayes_mix``: the equal mixture of the ``pbayes`` and ``pbayes_substitute_top1``
  neighbourhoods, ``centre=("returned", "substitute_top1")``;
- ``ddae_plus``: the D-DAE restorer trained on the ``pbayes`` table (``_refine3``: on the
  ``pbayes_refine3`` table);
- ``ddae_plus_mix``: the restorer trained on the ``pbayes_mix`` table; ``ddae_plus_mix_top1``:
  the same, the restorer also fed the answer's one-hot top-1 class (``top1_input=True``);
- ``ddae``: the restorer trained on 5 shadow MLPs, fitted on 150 labelled pool rows;
- ``pbayes_oracle``: **upper bound, not an attack**: centred on the target's clean outputs, as
  the reference code does.

For ModelGuard-S, ``cluster_mean`` is the error of the ideal Bayes estimator for this query set
(each returned centroid replaced by the mean of the clean rows it answered): what no recovery
can beat when the prior is the true one. m-QPI (m = 2, two full passes over the pool, the
paper's order) against ModelGuard-S ordered and non-ordered: answers changed in the second
pass, and the ℓ2 recovery distance of 1-QPI and 2-QPI on those rows. Last, the time to match
10,000 returned vectors against a 10⁶-entry table.

Writes ``benchmarks/results/adaptive_recovery.{json,md}``.

    python benchmarks/adaptive_recovery.py [--quick] [--target-epochs N] [--tag SUFFIX]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree

from modelsteal.attacks import AttackState
from modelsteal.attacks.adaptive import RepeatQuerier
from modelsteal.attacks.bayes import (
    PartialBayes,
    build_table,
    fit_centre_model,
    match_table,
    simulated_defense,
)
from modelsteal.attacks.ddae import DDAE, DDAEPlus, restore
from modelsteal.attacks.training import SubstituteTrainer
from modelsteal.data import load_splits
from modelsteal.defenses import build_defense, defended
from modelsteal.metrics import recovery_distance
from modelsteal.models import TrainConfig, build_model, predict_proba, train_model
from modelsteal.targets import TorchTarget

HERE = Path(__file__).resolve().parent
DEFENSES = [
    ("reverse_sigmoid", {}),
    ("mad", {"epsilon": 1.0, "oracle": "argmax"}),
    ("modelguard_w", {"epsilon": 1.0}),
    ("modelguard_s", {"epsilon": 1.0}),
]


def distances(rec: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    return {
        "l2": recovery_distance(rec, clean, ord=2),
        "l1": recovery_distance(rec, clean, ord=1),
    }


def cluster_mean(returned: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Each row replaced by the mean clean row of all rows that got the same answer."""
    _, inverse = np.unique(returned, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    sums = np.zeros((inverse.max() + 1, clean.shape[1]))
    np.add.at(sums, inverse, clean)
    return (sums / np.bincount(inverse)[:, None])[inverse]


def coverage(table, returned: np.ndarray) -> float:
    """Median ℓ1 distance from a returned row to the nearest perturbed entry with its top-1."""
    out = np.full(len(returned), np.inf)
    row_key, entry_key = returned.argmax(axis=1), table.clean.argmax(axis=1)
    for k in np.unique(row_key):
        entries = table.perturbed[entry_key == k]
        if len(entries):
            out[row_key == k] = cKDTree(entries).query(returned[row_key == k], k=1, p=1)[0]
    return float(np.median(out))


def recoveries(name, params, x, clean, returned, side, *, epochs, quick):
    rows: dict[str, dict[str, float]] = {"raw": distances(returned, clean)}
    timings: dict[str, float] = {}

    def timed(label, fn):
        t = time.perf_counter()
        rec = fn()
        timings[label] = time.perf_counter() - t
        rows[label] = distances(rec, clean)

    def pbayes(key=None, **kw):  # key: keep the table, for its coverage (measured untimed)
        rec = PartialBayes(name, params, seed=0, **kw)
        out = rec(returned, x)
        if key is not None:
            tables[key] = rec.table()
        return out

    tables: dict[str, Any] = {}
    timed("pbayes", lambda: pbayes("returned"))
    timed("pbayes_refine3", lambda: pbayes(refine=3))

    trainer = SubstituteTrainer(config=TrainConfig(epochs=20), min_steps=300)

    def fit_centre(centre):  # the attacker's own model, as PartialBayes.prepare trains it
        return fit_centre_model(
            centre, x, returned, trainer=trainer, input_shape=x.shape[1:], seed=0
        )

    def substitute_centred():
        sub = fit_centre("substitute")
        return PartialBayes(name, params, centre="substitute", centre_model=sub, seed=0)(
            returned, x
        )

    timed("pbayes_substitute", substitute_centred)

    t = time.perf_counter()
    sub_top1 = fit_centre("substitute_top1")
    timings["substitute_top1_fit"] = time.perf_counter() - t
    mix = ("returned", "substitute_top1")
    models = {"substitute_top1": sub_top1}
    rows["substitute_top1"] = distances(predict_proba(sub_top1, x), clean)
    timed(
        "pbayes_substitute_top1",
        lambda: PartialBayes(name, params, centre="substitute_top1", centre_model=sub_top1, seed=0)(
            returned, x
        ),
    )
    timed("pbayes_mix", lambda: pbayes("mix", centre=mix, centre_model=models))

    def ddae_plus(refine, *, centre="returned", top1_input=False):
        rec = DDAEPlus(
            name,
            params,
            centre=centre,
            centre_model=models if centre != "returned" else None,
            refine=refine,
            top1_input=top1_input,
            epochs=epochs,
            seed=0,
        )
        rec.fit_returned(returned, x)
        return rec(returned, x)

    timed("ddae_plus", lambda: ddae_plus(0))
    timed("ddae_plus_refine3", lambda: ddae_plus(3))
    timed("ddae_plus_mix", lambda: ddae_plus(0, centre=mix))
    timed("ddae_plus_mix_top1", lambda: ddae_plus(0, centre=mix, top1_input=True))

    def ddae():
        rec = DDAE(name, params, shadows=5, shadow_epochs=30, epochs=epochs, seed=0)
        pert, cl = rec.training_pairs(
            side.X, side.y, x, n_classes=clean.shape[1], rng=np.random.default_rng(0)
        )
        rec.fit_pairs(pert, cl, seed=0)
        return restore(rec.restorer_, returned)

    timed("ddae", ddae)
    timed("pbayes_oracle", lambda: pbayes("oracle", centre="oracle_clean", clean=clean))
    rows["coverage"] = {key: coverage(table, returned) for key, table in tables.items()}
    if name == "modelguard_s":
        rows["cluster_mean"] = distances(cluster_mean(returned, clean), clean)
    return rows, timings


def mqpi(target, x, clean):
    out = {}
    for ordered in (False, True):
        guarded = defended(target, "modelguard_s", epsilon=1.0, ordered=ordered)
        state = AttackState(pool=x, n_classes=clean.shape[1], input_shape=x.shape[1:])
        averaged = RepeatQuerier(m=2).ask(guarded, x, state, np.random.default_rng(0))
        first = state.memo["mqpi_first"][0]
        idx = np.asarray(state.memo["mqpi_changed_index"], dtype=np.int64)
        row = {"queries": len(x), "changed": int(state.memo["mqpi_changed"])}
        if len(idx):
            row["qpi1_l2_on_changed"] = recovery_distance(first[idx], clean[idx])
            row["qpi2_l2_on_changed"] = recovery_distance(averaged[idx], clean[idx])
        row["qpi1_l2_all"] = recovery_distance(first, clean)
        row["qpi2_l2_all"] = recovery_distance(averaged, clean)
        out["ordered" if ordered else "non_ordered"] = row
    return out


def scaling(n_table: int, n_queries: int) -> dict[str, float]:
    """Build a table of ``n_table`` entries (reverse sigmoid) and match ``n_queries`` rows."""
    rng = np.random.default_rng(0)
    sim = simulated_defense("reverse_sigmoid")
    centres = rng.dirichlet(np.full(10, 0.3), size=n_table // 20)
    t = time.perf_counter()
    table = build_table(centres, sim, samples_per_centre=20, rng=rng)
    built = time.perf_counter() - t
    queries = sim.perturb(rng.dirichlet(np.full(10, 0.3), size=n_queries))
    t = time.perf_counter()
    _, counts = match_table(table, queries, tolerance=0.01, norm=1, same_top1=True)
    matched = time.perf_counter() - t
    return {
        "table_entries": len(table),
        "queries": n_queries,
        "build_seconds": built,
        "match_seconds": matched,
        "mean_matches": float(counts.mean()),
    }


def markdown(result: dict) -> str:
    lines = [
        "# Adaptive recoveries: recovery distance on a digits MLP target",
        "",
        f"`{result['command']}` — {result['machine']}; {result['queries']} queries (the attacker "
        "pool), target test accuracy "
        f"{result['target_accuracy']:.3f} ({result['target_epochs']} epochs; mean top-1 "
        f"probability on the queries {result['target_mean_top1']:.3f}). "
        "Mean ‖ỹ − y‖₂ (ℓ1 in brackets); lower is closer to the "
        "clean vectors. `pbayes_oracle` is an upper bound (centred on the clean outputs), not an "
        "attack.",
        "",
    ]
    methods = [
        "raw",
        "pbayes",
        "pbayes_refine3",
        "pbayes_substitute",
        "substitute_top1",
        "pbayes_substitute_top1",
        "pbayes_mix",
        "ddae_plus",
        "ddae_plus_refine3",
        "ddae_plus_mix",
        "ddae_plus_mix_top1",
        "ddae",
        "pbayes_oracle",
        "cluster_mean",
    ]
    names = [d for d, _ in DEFENSES]
    lines.append("| recovery | " + " | ".join(names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for m in methods:
        cells = []
        for d in names:
            r = result["recovery"][d].get(m)
            cells.append("—" if r is None else f"{r['l2']:.3f} ({r['l1']:.3f})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Coverage: median ℓ1 distance from a returned vector to the nearest perturbed table entry "
        "with its top-1 (tables of `pbayes`, `pbayes_mix`, `pbayes_oracle`): "
        + "; ".join(
            f"{d}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in result["recovery"][d]["coverage"].items())
            for d in names
        )
        + ".",
        "",
        "`cluster_mean` (ModelGuard-S only): each answer replaced by the mean clean row of the "
        "queries that got it — the ideal Bayes estimator on this query set; `raw` under "
        "ModelGuard-S is its quantization error.",
        "",
        "## m-QPI (m = 2) against ModelGuard-S, ε = 1",
        "",
        "| store | queries | changed answers | 1-QPI ℓ2 on changed | 2-QPI ℓ2 on changed |",
        "|---|---|---|---|---|",
    ]
    for k, r in result["mqpi"].items():
        a = r.get("qpi1_l2_on_changed")
        b = r.get("qpi2_l2_on_changed")
        lines.append(
            f"| {k} | {r['queries']} | {r['changed']} | "
            f"{'—' if a is None else f'{a:.3f}'} | {'—' if b is None else f'{b:.3f}'} |"
        )
    s = result["scaling"]
    lines += [
        "",
        "## Lookup-table matching cost",
        "",
        f"{s['table_entries']:,} table entries (reverse sigmoid, 10 classes), {s['queries']:,} "
        f"returned vectors: built in {s['build_seconds']:.1f} s, matched in "
        f"{s['match_seconds']:.1f} s (one thread; {s['mean_matches']:.1f} matches per row).",
        "",
        "Seconds per recovery (whole query set): "
        + "; ".join(
            f"{d}: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"][d].items())
            for d in names
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small table and few epochs")
    parser.add_argument(
        "--target-epochs",
        type=int,
        default=30,
        help="epochs of the target MLP (fewer: a less confident target)",
    )
    parser.add_argument("--tag", default="", help="suffix of the result files' names")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = load_splits("digits", seed=0, pool_fraction=0.7)
    model = build_model("mlp", splits.input_shape, splits.n_classes, seed=0)
    model = train_model(
        model,
        splits.target_train.X,
        splits.target_train.y,
        config=TrainConfig(epochs=args.target_epochs),
        seed=0,
    )
    target = TorchTarget(model, input_shape=splits.input_shape)
    acc = float(
        (predict_proba(model, splits.target_test.X).argmax(1) == splits.target_test.y).mean()
    )
    x = splits.attacker_pool.X
    pick = np.random.default_rng(0).choice(len(x), size=150, replace=False)
    from modelsteal.data import ArraySet

    side = ArraySet(x[pick], splits.attacker_pool.y[pick])  # the attacker's small labelled set
    clean = target.query(x)
    epochs = 20 if args.quick else 100
    flags = (" --quick" if args.quick else "") + (
        f" --target-epochs {args.target_epochs}" if args.target_epochs != 30 else ""
    )
    result = {
        "command": "python benchmarks/adaptive_recovery.py"
        + flags
        + (f" --tag {args.tag}" if args.tag else ""),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "queries": len(x),
        "target_accuracy": acc,
        "target_epochs": args.target_epochs,
        "target_mean_top1": float(clean.max(axis=1).mean()),
        "restorer_epochs": epochs,
        "recovery": {},
        "seconds": {},
    }
    for name, params in DEFENSES:
        returned = build_defense(name, **params).perturb(clean, x=x)
        rows, secs = recoveries(name, params, x, clean, returned, side, epochs=epochs, quick=False)
        result["recovery"][name], result["seconds"][name] = rows, secs
        print(name, {k: round(v["l2"], 3) for k, v in rows.items() if "l2" in v}, flush=True)
    result["mqpi"] = mqpi(target, x, clean)
    print(result["mqpi"], flush=True)
    n_table = 100_000 if args.quick else 1_000_000
    result["scaling"] = scaling(n_table, 10_000)
    print(result["scaling"], flush=True)
    stem = ("adaptive_recovery_quick" if args.quick else "adaptive_recovery") + args.tag
    out = HERE / "results"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
