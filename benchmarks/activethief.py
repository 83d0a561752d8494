"""ActiveThief: every selection strategy and seeding against random selection, plus the stopping rule.

The target is trained on ``load_splits(data, seed=0, ...)``'s target_train part (digits: the
registry MLP; MNIST: the registry small CNN); the attacker's unlabelled pool is the attacker_pool
part (about 1,000 rows on digits) and everything is measured on target_test (fidelity: agreement
with the target's labels, computed once as ``eval_target = target.query(test_x)``; accuracy:
against the true labels). Each configuration (selection × seeding) runs once per seed up to the
largest budget with a fixed initial seed and a fixed selection size ``k`` per round, so the
budgets of the table are round ends and the substitute is measured after every round; the
substitute is retrained from the same initial weights each round (the recipe's default).

Item 2 of issue 5: the queries each strategy needs to reach the fidelity that random selection
reaches at the largest budget (mean curves, linear interpolation between round ends).
Item 3: the entropy stopping rule (thesis Eq. 4) for several α, run for real (``alpha=`` in the
recipe, which ends the run), reporting the queries and accuracy/fidelity at the stop. With
``--derive-stops`` the stops are read off the full runs instead, for every selection: the rule
looks only at the batch entropies of the rounds before it fires and ending a run changes none of
them, so the stopped run is the full run cut at the stop (on digits, all 24 real stop runs
matched their derived stop and accuracy exactly).

``--from-store DIR`` runs nothing: it reads the runs of an ActiveThief experiment grid from the
result store that ``modelsteal run`` wrote (``configs/activethief_mnist.toml``: one cell per
selection and seed, measured at every round end, with each round's batch entropy) and writes the
same tables, with the stops derived. ``MODELSTEAL_DEVICE=cuda`` trains and scores on a GPU (the
JSON records the device).

Writes ``benchmarks/results/activethief_<data>.{json,md,png}``. Digits: about 4 minutes on
2 cores. MNIST, the thesis' setting, runs as an experiment grid (about an hour on 2 cores):

    python benchmarks/activethief.py [--data digits] [--seeds 0 1 2] [--workers 2] [--quick]
        [--budgets ...] [--derive-stops] [--no-seedings]
    MODELSTEAL_DATA=/path/to/datasets modelsteal run configs/activethief_mnist.toml \
        --out results/activethief_mnist --workers 2
    python benchmarks/activethief.py --from-store results/activethief_mnist --budgets 2000 5000 10000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

import modelsteal.attacks.recipes.activethief_pal_2020  # noqa: F401  (registers the recipe)
from modelsteal.attacks import build_recipe, extract
from modelsteal.attacks.activethief import entropy_stop
from modelsteal.data import load_splits
from modelsteal.metrics import accuracy
from modelsteal.models import (
    TrainConfig,
    build_model,
    compute_device,
    predict_proba,
    train_model,
)
from modelsteal.targets import TorchTarget

HERE = Path(__file__).resolve().parent

SELECTIONS = [
    "random",
    "uniform",
    "least_confidence",
    "margin",
    "entropy",
    "kcenter",
    "dfal",
    "dfal+kcenter",
    "entropy+kcenter",
    "entropy+uniform",
    "entropy+kcenter+uniform",
]
SEEDED = ["random", "entropy", "kcenter"]  # also run with cluster and kmeans_input seeding
ALPHAS = [0.005, 0.01, 0.05, 0.1]
STOP_SELECTIONS = ["entropy", "entropy+kcenter"]

SETTINGS: dict[str, dict[str, Any]] = {
    "digits": {
        "target": "mlp",
        "pool_fraction": 0.7,
        "target_epochs": 30,
        "budgets": [100, 200, 400, 700],
        "initial_seed": 50,
        "k": 50,
    },
    "mnist": {  # the thesis' setting
        "target": "cnn",
        "pool_fraction": 0.5,
        "target_epochs": 5,
        "budgets": [2000, 5000, 10000, 15000, 20000],
        "initial_seed": 1000,
        "k": 1000,
        # shorter training than the recipe's default (20 epochs / 500 steps), so that eleven
        # strategies x three seeds fit in about an hour on 2 CPU cores
        "trainer": {"epochs": 5, "min_steps": 300},
    },
}

_W: dict[str, Any] = {}  # per-worker state


def _init(state: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    _W.update(state)


def _job(job: dict[str, Any]) -> dict[str, Any]:
    cfg = _W["cfg"]
    budgets = cfg["budgets"][: job["n_budgets"]]
    recipe = build_recipe(
        "activethief",
        selection=job["selection"],
        seeding=job["seeding"],
        initial_seed=cfg["initial_seed"],
        k=cfg["k"],
        alpha=job.get("alpha"),
        **cfg.get("trainer", {}),
    )
    schedule = recipe.rounds(budgets[-1])
    t0 = time.perf_counter()
    result = extract(
        _W["target"],
        recipe,
        pool=_W["pool"],
        budget=budgets[-1],
        seed=job["seed"],
        schedule=schedule,
        eval_x=_W["test_x"],
        eval_y=_W["test_y"],
        eval_target=_W["eval_target"],
        domain=_W["domain"],
    )
    info = result.info.get("activethief", {})
    return {
        **job,
        "history": [
            {k: float(r[k]) for k in ("queries", "fidelity", "accuracy")} for r in result.history
        ],
        "queries": int(result.queries),
        "stop_at": info.get("stop_at"),
        "batch_entropy": info.get("batch_entropy", []),
        "round_queries": info.get("queries", []),
        "seconds": time.perf_counter() - t0,
    }


def derived_stop(batch_entropy: list[float], round_queries: list[int], alpha: float) -> int | None:
    """Where the entropy rule with ``alpha`` ends a run whose rounds are these (None: never).

    The rule is checked when round ``i`` starts, on the rounds before it (``entropy_stop``), and
    the run ends there without asking round ``i``: the stop is ``round_queries[i]``.
    """
    for i in range(2, len(batch_entropy)):
        if entropy_stop(batch_entropy[:i], alpha):
            return int(round_queries[i])
    return None


def _label(selection: str, seeding: str) -> str:
    return selection if seeding == "random" else f"{selection} [{seeding} seed]"


def queries_to_reach(queries: np.ndarray, curve: np.ndarray, level: float) -> float | None:
    """First query count at which the (mean) curve reaches ``level``, linearly interpolated."""
    for i, (q, v) in enumerate(zip(queries, curve, strict=True)):
        if v >= level:
            if i == 0:
                return float(q)
            q0, v0 = queries[i - 1], curve[i - 1]
            return float(q0 + (q - q0) * (level - v0) / (v - v0))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(SETTINGS), default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run; results not written")
    parser.add_argument("--budgets", type=int, nargs="+", help="the table's budgets (round ends)")
    parser.add_argument(
        "--derive-stops",
        action="store_true",
        help="read the stopping rule off the full runs instead of running it",
    )
    parser.add_argument(
        "--no-seedings", action="store_true", help="random seeding only (no cluster/k-means)"
    )
    parser.add_argument(
        "--from-store",
        type=Path,
        help="read the runs of an ActiveThief grid from this `modelsteal run` folder",
    )
    parser.add_argument(
        "--partial", action="store_true", help="with --from-store: report an unfinished grid"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.from_store is not None:
        meta, runs = _from_store(args.from_store, args.budgets, partial=args.partial)
        return _report(meta, runs, started=started)
    cfg = dict(SETTINGS[args.data])
    if args.budgets:
        cfg["budgets"] = sorted(args.budgets)
    device = compute_device()

    splits = load_splits(args.data, seed=0, pool_fraction=cfg["pool_fraction"])
    model = build_model(cfg["target"], splits.input_shape, splits.n_classes, seed=0)
    model = train_model(
        model,
        splits.target_train.X,
        splits.target_train.y,
        config=TrainConfig(epochs=cfg["target_epochs"]),
        seed=0,
    )
    model.eval()
    target = TorchTarget(model, input_shape=splits.input_shape)
    test_x, test_y = splits.target_test.X, splits.target_test.y
    target_acc = accuracy(test_y, predict_proba(model, test_x))
    eval_target = target.query(test_x)  # the fixed evaluation reference
    sizes = {
        "target_train": len(splits.target_train),
        "attacker_pool": len(splits.attacker_pool),
        "target_test": len(test_y),
    }
    print(f"target test accuracy {target_acc:.4f}; sizes {sizes}", flush=True)

    n_budgets = 2 if args.quick else len(cfg["budgets"])
    budgets = cfg["budgets"][:n_budgets]
    configs = [(s, "random") for s in SELECTIONS] + [
        (s, seeding)
        for s in ([] if args.no_seedings else SEEDED)
        for seeding in ("cluster", "kmeans_input")
    ]
    if args.quick:
        configs = [("random", "random"), ("entropy", "random"), ("kcenter", "cluster")]
    jobs = [
        {"selection": s, "seeding": sd, "seed": seed, "n_budgets": n_budgets}
        for s, sd in configs
        for seed in args.seeds
    ]
    if not args.derive_stops:
        jobs += [
            {"selection": s, "seeding": "random", "seed": seed, "n_budgets": n_budgets, "alpha": a}
            for s in STOP_SELECTIONS
            for a in ALPHAS
            for seed in args.seeds
        ]
    jobs.sort(key=lambda j: "dfal" not in j["selection"])  # the longest first
    runs: list[dict[str, Any]] = []
    state = {
        "cfg": cfg,
        "target": target,
        "pool": splits.attacker_pool.X,
        "test_x": test_x,
        "test_y": test_y,
        "eval_target": eval_target,
        "domain": splits.domain,
    }
    # CUDA cannot be used again in a forked child: start the workers fresh on a GPU
    context = multiprocessing.get_context("spawn" if device.type == "cuda" else None)
    with ProcessPoolExecutor(
        args.workers, mp_context=context, initializer=_init, initargs=(state,)
    ) as ex:
        for out in ex.map(_job, jobs):
            runs.append(out)
            tag = f" alpha={out['alpha']}" if "alpha" in out else ""
            print(
                f"{_label(out['selection'], out['seeding'])}{tag} seed {out['seed']}: "
                f"{out['queries']} queries, {out['seconds']:.1f}s",
                flush=True,
            )
    command = f"python benchmarks/activethief.py --data {args.data} --seeds " + " ".join(
        map(str, args.seeds)
    )
    if args.budgets:
        command += " --budgets " + " ".join(map(str, budgets))
    command += " --derive-stops" * args.derive_stops + " --no-seedings" * args.no_seedings
    if device.type != "cpu":
        command = f"MODELSTEAL_DEVICE={device} " + command
    meta = {
        "data": args.data,
        "target": cfg["target"],
        "target_test_accuracy": target_acc,
        "split": {"seed": 0, "pool_fraction": cfg["pool_fraction"], "sizes": sizes},
        "budgets": budgets,
        "initial_seed": cfg["initial_seed"],
        "trainer": cfg.get("trainer", "the recipe's default"),
        "k": cfg["k"],
        "seeds": args.seeds,
        "configs": configs,
        "derive_stops": args.derive_stops,
        "command": command,
        "write": not args.quick,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "workers": args.workers,
            "threads_per_worker": 1,
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
    }
    _report(meta, runs, started=started)


def _from_store(
    folder: Path, budgets: list[int] | None, *, partial: bool = False
) -> tuple[dict[str, Any], list]:
    """The runs of an ActiveThief grid in a `modelsteal run` folder, as :func:`_job` returns them."""
    import tomllib

    from modelsteal.experiments.config import parse_config
    from modelsteal.experiments.report import current_rows
    from modelsteal.experiments.store import ResultStore

    store = ResultStore(folder / "results.sqlite")
    latest = store.latest_config()
    if latest is None:
        raise SystemExit(f"{folder}: no grid has run into this store")
    config = parse_config(tomllib.loads(latest[0]), source=latest[1])
    rows, failed = current_rows(store)
    runs, utility = [], None
    for row in rows:
        if row["kind"] == "utility":
            utility = row["result"]
            continue
        spec, result = row["spec"], row["result"]
        if spec["recipe"] not in ("activethief", "activethief_pal_2020"):
            continue
        rounds = result.get("activethief", {})
        runs.append(
            {
                "selection": spec["params"].get("selection", "kcenter"),
                "seeding": spec["params"].get("seeding", "random"),
                "seed": spec["seed"],
                "history": [
                    {k: float(h[k]) for k in ("queries", "fidelity", "accuracy")}
                    for h in result["history"]
                ],
                "queries": int(result["queries"]),
                "stop_at": rounds.get("stop_at"),
                "batch_entropy": rounds.get("batch_entropy", []),
                "round_queries": rounds.get("round_queries", []),
                "seconds": row["seconds"],
            }
        )
    expected = sum(1 for c in config.cells() if c.kind == "attack")
    if len(runs) < expected or failed:
        message = (
            f"{folder}: {len(runs)} of {expected} attack cells finished ({len(failed)} failed)"
        )
        if not partial:
            raise SystemExit(message + "; run the grid to the end first (or pass --partial)")
        print(message + "; reporting those", flush=True)
    params = config.attack["params"]
    splits = load_splits(
        config.data["name"],
        seed=config.data.get("split_seed", 0),
        pool_fraction=config.data["pool_fraction"],
    )
    round_ends = config.attack["budgets"]
    configs = list(dict.fromkeys((r["selection"], r["seeding"]) for r in runs))
    meta = {
        "data": config.data["name"],
        "target": config.target["arch"],
        "target_test_accuracy": (utility or {}).get("clean_accuracy"),
        "split": {
            "seed": config.data.get("split_seed", 0),
            "pool_fraction": config.data["pool_fraction"],
            "sizes": {
                "target_train": len(splits.target_train),
                "attacker_pool": len(splits.attacker_pool),
                "target_test": len(splits.target_test),
            },
        },
        "budgets": sorted(budgets) if budgets else round_ends,
        "initial_seed": params.get("initial_seed"),
        "trainer": {k: params[k] for k in ("epochs", "min_steps") if k in params},
        "k": params.get("k"),
        "seeds": config.seeds,
        "configs": configs,
        "derive_stops": True,
        "command": f"python benchmarks/activethief.py --from-store {folder}"
        + (" --budgets " + " ".join(map(str, sorted(budgets))) if budgets else "")
        + (" --partial" if partial else ""),
        "cells": {"finished": len(runs), "expected": expected},
        "grid_seconds": float(sum(r["seconds"] for r in runs)),
        "write": True,
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
    }
    return meta, runs


def _report(meta: dict[str, Any], runs: list[dict[str, Any]], *, started: float) -> None:
    """Items 1-3 from the runs; writes ``results/activethief_<data>.{json,md,png}``."""
    configs, budgets = meta["configs"], meta["budgets"]

    full = [r for r in runs if "alpha" not in r]
    stops = [r for r in runs if "alpha" in r]
    if meta["derive_stops"]:  # the full runs cut where the rule fires
        stops = []
        for r in full:
            if r["seeding"] != "random":
                continue
            by_queries = {h["queries"]: h for h in r["history"]}
            for a in ALPHAS:
                stop = derived_stop(r["batch_entropy"], r["round_queries"], a)
                cut = [h for h in r["history"] if stop is None or h["queries"] <= stop]
                assert stop is None or stop in by_queries, "measure at every round end"
                stops.append(
                    {
                        **r,
                        "alpha": a,
                        "stop_at": stop,
                        "history": cut,
                        "queries": cut[-1]["queries"],
                    }
                )
    # item 1: accuracy and fidelity per budget; curves at every round end
    curves: dict[str, dict[str, Any]] = {}
    summary = []
    for s, sd in configs:
        rows = [r for r in full if r["selection"] == s and r["seeding"] == sd]
        q = np.array([h["queries"] for h in rows[0]["history"]])
        fid = np.array([[h["fidelity"] for h in r["history"]] for r in rows])
        acc = np.array([[h["accuracy"] for h in r["history"]] for r in rows])
        name = _label(s, sd)
        curves[name] = {
            "queries": q.tolist(),
            "fidelity_mean": fid.mean(0).tolist(),
            "fidelity_std": fid.std(0, ddof=1).tolist(),
            "accuracy_mean": acc.mean(0).tolist(),
        }
        for b in budgets:
            i = int(np.flatnonzero(q == b)[0])
            summary.append(
                {
                    "strategy": name,
                    "selection": s,
                    "seeding": sd,
                    "queries": b,
                    "n_seeds": len(rows),
                    "fidelity": {"mean": fid[:, i].mean(), "std": fid[:, i].std(ddof=1)},
                    "accuracy": {"mean": acc[:, i].mean(), "std": acc[:, i].std(ddof=1)},
                }
            )

    # item 2: queries to reach random selection's fidelity at the largest budget
    ref = curves["random"]["fidelity_mean"][-1]
    reach = []
    for name, c in curves.items():
        need = queries_to_reach(np.array(c["queries"]), np.array(c["fidelity_mean"]), ref)
        reach.append(
            {
                "strategy": name,
                "queries": need,
                "saving": None if need is None else 1 - need / budgets[-1],
            }
        )

    # item 3: the stopping rule
    stopping = []
    stop_selections = [s for s in SELECTIONS if any(r["selection"] == s for r in stops)]
    for s in stop_selections:
        for a in ALPHAS:
            rows = [r for r in stops if r["selection"] == s and r["alpha"] == a]
            last = [r["history"][-1] for r in rows]
            stopping.append(
                {
                    "selection": s,
                    "alpha": a,
                    "stop_at": [r["stop_at"] for r in rows],
                    "queries": {
                        "mean": float(np.mean([r["queries"] for r in rows])),
                        "std": float(np.std([r["queries"] for r in rows], ddof=1)),
                    },
                    "fired": sum(r["stop_at"] is not None for r in rows),
                    "accuracy": float(np.mean([h["accuracy"] for h in last])),
                    "fidelity": float(np.mean([h["fidelity"] for h in last])),
                    "batch_entropy": [r["batch_entropy"] for r in rows],
                }
            )

    result_json = {
        **{k: v for k, v in meta.items() if k not in ("configs", "derive_stops", "write")},
        "summary": summary,
        "curves": curves,
        "random_fidelity_at_largest_budget": ref,
        "queries_to_reach_random": reach,
        "stopping_rule": stopping,
        "stops": "derived from the full runs" if meta["derive_stops"] else "run",
        "runs": runs,
        "seconds": time.perf_counter() - started,
    }
    text = _markdown(result_json)
    print(text)
    if meta["write"]:
        data = meta["data"]
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        (out / f"activethief_{data}.json").write_text(json.dumps(result_json, indent=2))
        (out / f"activethief_{data}.md").write_text(text)
        _plot(curves, ref, out / f"activethief_{data}.png", data)


def _markdown(r: dict[str, Any]) -> str:
    budgets = r["budgets"]
    lines = [
        f"{r['data']} {r['target']} target, test accuracy {r['target_test_accuracy']:.4f}; "
        f"pool {r['split']['sizes']['attacker_pool']} rows, test {r['split']['sizes']['target_test']}"
        f" rows; initial seed {r['initial_seed']}, k = {r['k']} per round; seeds {r['seeds']} "
        "(mean ± std).",
        "",
        "Fidelity (agreement with the target's labels on the test split):",
        "",
        "| strategy | " + " | ".join(str(b) for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for key in ("fidelity", "accuracy"):
        if key == "accuracy":
            lines += [
                "",
                "Accuracy (against the true labels of the test split):",
                "",
                "| strategy | " + " | ".join(str(b) for b in budgets) + " |",
                "|---|" + "---|" * len(budgets),
            ]
        names = list(dict.fromkeys(e["strategy"] for e in r["summary"]))
        for name in names:
            cells = [
                f"{e[key]['mean']:.3f} ± {e[key]['std']:.3f}"
                for e in r["summary"]
                if e["strategy"] == name
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ref = r["random_fidelity_at_largest_budget"]
    lines += [
        "",
        f"Queries to reach random selection's mean fidelity at {budgets[-1]} queries ({ref:.3f}); "
        "linear interpolation between round ends of the mean curve:",
        "",
        "| strategy | queries | saving vs random |",
        "|---|---|---|",
    ]
    for e in sorted(r["queries_to_reach_random"], key=lambda e: e["queries"] or np.inf):
        if e["queries"] is None:
            lines.append(f"| {e['strategy']} | not reached by {budgets[-1]} | — |")
        else:
            lines.append(f"| {e['strategy']} | {e['queries']:.0f} | {e['saving']:+.0%} |")
    lines += [
        "",
        f"Entropy stopping rule (budget {budgets[-1]}; the run ends when the rule fires"
        + ("; read off the full runs" if r.get("stops", "run") != "run" else "")
        + "; mean over seeds):",
        "",
        "| selection | α | fired | queries at stop | per seed | accuracy at stop | "
        "fidelity at stop |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in r["stopping_rule"]:
        per_seed = ", ".join("—" if s is None else str(s) for s in e["stop_at"])
        lines.append(
            f"| {e['selection']} | {e['alpha']} | {e['fired']}/{len(e['stop_at'])} | "
            f"{e['queries']['mean']:.0f} ± {e['queries']['std']:.0f} | {per_seed} | "
            f"{e['accuracy']:.3f} | {e['fidelity']:.3f} |"
        )
    lines += [
        "",
        (
            f"The grid's cells took {r['grid_seconds'] / 60:.0f} minutes of worker time"
            if "grid_seconds" in r
            else f"{r['seconds']:.0f} s with {r['machine']['workers']} workers"
        )
        + (f" on {r['machine']['gpu']}" if r["machine"].get("gpu") else "")
        + f". Command: `{r['command']}`",
    ]
    return "\n".join(lines) + "\n"


def _plot(curves: dict[str, Any], ref: float, path: Path, data: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    cmap = plt.get_cmap("tab20")
    for i, (name, c) in enumerate(curves.items()):
        style = "-" if "seed]" not in name else "--"
        width = 2.5 if name == "random" else 1.2
        color = "black" if name == "random" else cmap(i % 20)
        ax.plot(c["queries"], c["fidelity_mean"], style, lw=width, color=color, label=name)
    ax.axhline(ref, color="grey", lw=0.8, ls=":")
    ax.set(
        xlabel="queries",
        ylabel="fidelity (test split, mean over seeds)",
        title=f"ActiveThief on {data}: fidelity vs queries",
    )
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
