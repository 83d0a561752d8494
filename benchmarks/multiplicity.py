"""Multiplicity of stolen surrogates on four tasks, and the cost of sampling 100 surrogates.

Writes ``benchmarks/results/multiplicity.{json,md,png}`` (full per-task reports, with their plots,
go to ``runs/multiplicity/<task>/``):

1. for Adult, COMPAS, PneumoniaMNIST and SST-2 (``configs/multiplicity_<task>.toml``): the target
   is trained, stolen with its probabilities on the attacker's queries, and the Rashomon set of
   surrogates sampled by re-training, dropout exploration and AWP; for each ε of a small sweep and
   both set rules (held-out loss, held-out fidelity), the fidelity range of the set beside the
   range of each fairness metric (the target's value alongside), ambiguity, discrepancy and
   Rashomon-capacity quantiles;
2. on Adult, 100 surrogates sampled from the same queries by re-training and by dropout
   exploration (and by AWP), timed in one run: sampling alone, and sampling plus scoring every
   model on the held-out queries and the evaluation rows.

Needs the data sets in ``$MODELSTEAL_DATA`` (or ``--data-dir``). About 10 minutes on 2 cores
(``--quick``: about 1 minute, smaller sets).

    python benchmarks/multiplicity.py [--data-dir DIR] [--quick] [--tasks adult compas ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from modelsteal.data import split_bundle
from modelsteal.models import build_model, predict_proba, train_model
from modelsteal.multiplicity import (
    rashomon_set,
    sample_awp,
    sample_dropout,
    sample_retrained,
    stack_scores,
)
from modelsteal.multiplicity.report import write_report
from modelsteal.multiplicity.tasks import (
    TASKS,
    MultiplicityConfig,
    load_config,
    load_task,
    run_multiplicity,
)
from modelsteal.targets import TorchTarget, budgeted

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
COMMAND = "python benchmarks/multiplicity.py"


def quick(cfg: MultiplicityConfig) -> MultiplicityConfig:
    """A smaller version of a study for --quick."""
    rs = dataclasses.replace(cfg.rashomon, n_models=10, rc_max_samples=500)
    data = dataclasses.replace(cfg.data, max_eval=min(cfg.data.max_eval or 2000, 2000))
    return dataclasses.replace(cfg, rashomon=rs, data=data)


def study(task: str, args) -> dict:
    cfg = load_config(ROOT / "configs" / f"multiplicity_{task}.toml")
    cfg = dataclasses.replace(cfg, seeds=tuple(args.seeds))
    if args.quick:
        cfg = quick(cfg)
    t0 = time.perf_counter()
    result = run_multiplicity(
        cfg, data_dir=args.data_dir, progress=lambda m: print(f"  {task}: {m}", flush=True)
    )
    write_report(
        result,
        ROOT / "runs" / "multiplicity" / task,
        command=f"modelsteal multiplicity configs/multiplicity_{task}.toml",
    )
    runs = [
        {
            "seed": r.seed,
            "target_accuracy": r.target_accuracy,
            "base_fidelity": r.base_fidelity,
            "base_accuracy": r.base_accuracy,
            "n_eval": r.n_eval,
            "n_queries": r.n_queries,
            "timings_s": r.timings,
        }
        for r in result.runs
    ]
    return {
        "task": task,
        "config": cfg.as_dict(),
        "seconds": time.perf_counter() - t0,
        "runs": runs,
        "rows": result.rows,
    }


def timing(args) -> dict:
    """Sample 100 surrogates on Adult by re-training, dropout and AWP from one set of queries."""
    cfg = load_config(ROOT / "configs" / "multiplicity_adult.toml")
    n = 10 if args.quick else args.timing_models
    bundle = load_task(cfg, data_dir=args.data_dir)
    seed = args.seeds[0]
    splits = split_bundle(bundle, seed=seed, pool_fraction=cfg.data.pool_fraction)
    rng = np.random.default_rng(seed)
    tgt, sur = cfg.target, cfg.surrogate
    target = build_model(tgt.arch, splits.input_shape, 2, seed=seed, **tgt.params)
    train_model(
        target, splits.target_train.X, splits.target_train.y, config=tgt.train_config(), seed=seed
    )
    api = budgeted(TorchTarget(target, input_shape=splits.input_shape), cfg.attack.budget)
    pool = splits.attacker_pool.X
    X_q = pool[np.sort(rng.choice(len(pool), cfg.attack.budget, replace=False))]
    Y_q = api.query(X_q)
    n_hold = round(cfg.attack.holdout_fraction * len(X_q))
    X_fit, Y_fit, X_hold, Y_hold = X_q[n_hold:], Y_q[n_hold:], X_q[:n_hold], Y_q[:n_hold]
    X_eval = splits.target_test.X[: cfg.data.max_eval]
    base = build_model(sur.arch, splits.input_shape, 2, seed=seed + 1, **sur.params)
    t0 = time.perf_counter()
    train_model(base, X_fit, Y_fit, config=sur.train_config(), seed=seed + 2)
    base_seconds = time.perf_counter() - t0
    d = cfg.rashomon.dropout
    samplers = {
        "retrain": lambda: sample_retrained(
            X_fit,
            Y_fit,
            arch=sur.arch,
            params=sur.params,
            config=sur.train_config(),
            n_models=n,
            seed=seed + 3,
            n_classes=2,
        ),
        "dropout": lambda: sample_dropout(
            base,
            p_values=np.linspace(d.p_max / d.n_p, d.p_max, d.n_p),
            n_per_p=math.ceil(n / d.n_p),
            kind=d.kind,
            seed=seed + 4,
        )[:n],
        "awp": lambda: [
            s.model
            for s in sample_awp(
                base, X_hold, Y_hold, epsilon=0.02, n_models=n, seed=seed + 5, step_size=0.005
            )
        ],
    }
    out = {
        "task": "adult",
        "n_models": n,
        "n_fit_queries": len(X_fit),
        "n_heldout": len(X_hold),
        "n_eval": len(X_eval),
        "surrogate": f"{sur.arch} {sur.params}, {sur.epochs} epochs, batch {sur.batch_size}",
        "base_training_s": base_seconds,
        "threads": torch.get_num_threads(),
    }
    for name, fn in samplers.items():
        print(f"  timing: {n} models by {name}", flush=True)
        t0 = time.perf_counter()
        models = fn()
        sampled = time.perf_counter() - t0
        kept, _ = rashomon_set(models, X_hold, Y_hold, epsilon=0.02, baseline=None)
        stack_scores(models, X_eval)
        out[name] = {
            "sample_s": sampled,
            "sample_and_score_s": time.perf_counter() - t0,
            "in_set_eps_0.02": len(kept),
        }
    for key in ("sample_s", "sample_and_score_s"):
        out[f"retrain_over_dropout_{key}"] = out["retrain"][key] / out["dropout"][key]
        out[f"retrain_over_awp_{key}"] = out["retrain"][key] / out["awp"][key]
    # also a sanity check: the base surrogate's predictions are unchanged by the sampling
    out["base_fidelity"] = float(
        (predict_proba(base, X_eval).argmax(1) == predict_proba(target, X_eval).argmax(1)).mean()
    )
    return out


def _f(v, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _rng(lo, hi) -> str:
    return f"{_f(lo)}–{_f(hi)}"


def table(rows: list[dict], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def task_tables(res: dict) -> list[str]:
    rows = res["rows"]
    attrs = sorted({k[: -len(".dp.target")] for k in rows[0] if k.endswith(".dp.target")})
    main = []
    for r in rows:
        line = {
            "sampler": r["sampler"],
            "rule": r["criterion"],
            "ε": f"{r['epsilon']:g}",
            "set": f"{r['set_size']}/{r['n_sampled']}",
            "fidelity": _rng(r["fidelity_min"], r["fidelity_max"]),
            "accuracy": _rng(r["accuracy_min"], r["accuracy_max"]),
        }
        for attr in attrs:
            for short, title in (("dp", "DP"), ("eodds", "EOdds"), ("eopp", "EOpp")):
                k = f"{attr}.{short}"
                line[f"{title}({attr}) target: set"] = (
                    f"{_f(r[k + '.target'])}: {_rng(r[k + '.min'], r[k + '.max'])}"
                )
        line.update(
            {
                "amb. h0/target": f"{_f(r['ambiguity_base'])}/{_f(r['ambiguity_target'])}",
                "disc. h0/target": f"{_f(r['discrepancy_base'])}/{_f(r['discrepancy_target'])}",
                "RC q50/q90/q99/max": "/".join(
                    _f(r[f"rc_{q}"]) for q in ("q50", "q90", "q99", "max")
                ),
            }
        )
        main.append(line)
    run = res["runs"][0]
    head = (
        f"Target accuracy {run['target_accuracy']:.3f}; base surrogate h0: fidelity "
        f"{run['base_fidelity']:.3f}, accuracy {run['base_accuracy']:.3f}; {run['n_queries']} "
        f"queries; {run['n_eval']} evaluation rows; {res['seconds']:.0f} s. Sampling time (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in run["timings_s"].items())
        + "."
    )
    return [f"## {res['task']}", "", head, "", table(main, list(main[0])), ""]


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        for sampler in res["config"]["rashomon"]["samplers"]:
            pts = [r for r in res["rows"] if r["sampler"] == sampler and r["criterion"] == "loss"]
            ax.plot([r["epsilon"] for r in pts], [r["ambiguity_base"] for r in pts], marker="o",
                    label=f"{sampler}: ambiguity")  # fmt: skip
            ax.plot([r["epsilon"] for r in pts], [r["discrepancy_base"] for r in pts],
                    marker="x", linestyle="--", label=f"{sampler}: discrepancy")  # fmt: skip
        ax.set_title(res["task"])
        ax.set_xlabel("ε (held-out cross-entropy, nats)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("against h0")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MODELSTEAL_DATA"))
    parser.add_argument("--quick", action="store_true", help="10 models per sampler (~1 minute)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--timing-models", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    results = []
    for task in args.tasks:
        print(f"{task}:", flush=True)
        results.append(study(task, args))
    timed = timing(args) if "adult" in args.tasks else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, RESULTS / "multiplicity.png")
    command = COMMAND + (" --quick" if args.quick else "")
    if args.seeds != [0]:
        command += " --seeds " + " ".join(map(str, args.seeds))
    meta = {
        "command": command,
        "seeds": args.seeds,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "torch_threads": 1,
        "seconds": time.perf_counter() - started,
    }
    (RESULTS / "multiplicity.json").write_text(
        json.dumps(_jsonable({"meta": meta, "tasks": results, "timing": timed}), indent=2)
    )
    md = [
        "# Multiplicity of stolen surrogates",
        "",
        f"Made by `{command}` (seeds {args.seeds}, {meta['seconds']:.0f} s on {meta['machine']}, "
        "one torch thread). Per task: the config in `configs/multiplicity_<task>.toml`; full "
        "reports with plots in `runs/multiplicity/<task>/`.",
        "",
        "Each row is the Rashomon set of one sampler (h0 plus the sampled models) at one ε under "
        "one rule: `loss` keeps models whose cross-entropy against the target's answers on the "
        "held-out queries is at most h0's + ε (nats); `fidelity` keeps models whose held-out "
        "agreement with the target is at least h0's − ε. Fidelity and accuracy: range over the "
        "set on the evaluation rows. Fairness: the target's value, then the set's min–max. "
        "Ambiguity/discrepancy against h0's and the target's decisions. RC: per-sample Rashomon "
        "capacity quantiles.",
        "",
    ]
    for res in results:
        md += task_tables(res)
    if timed is not None:
        rows = [
            {
                "sampler": name,
                "models": timed["n_models"],
                "sampling (s)": f"{timed[name]['sample_s']:.2f}",
                "sampling + scoring (s)": f"{timed[name]['sample_and_score_s']:.2f}",
                "in the loss ε=0.02 set": timed[name]["in_set_eps_0.02"],
            }
            for name in ("retrain", "dropout", "awp")
        ]
        md += [
            "## Sampling 100 surrogates on Adult",
            "",
            f"{timed['n_models']} models from {timed['n_fit_queries']} fit queries "
            f"({timed['surrogate']}); scoring = held-out filter on {timed['n_heldout']} queries "
            f"and scores on {timed['n_eval']} evaluation rows. Training h0 itself took "
            f"{timed['base_training_s']:.2f} s.",
            "",
            table(rows, list(rows[0])),
            "",
            "Re-training / dropout: "
            f"{timed['retrain_over_dropout_sample_s']:.0f}× (sampling), "
            f"{timed['retrain_over_dropout_sample_and_score_s']:.0f}× (sampling + scoring). "
            "Re-training / AWP: "
            f"{timed['retrain_over_awp_sample_s']:.1f}× (sampling), "
            f"{timed['retrain_over_awp_sample_and_score_s']:.1f}× (sampling + scoring).",
            "",
        ]
    md += ["![ambiguity and discrepancy against ε](multiplicity.png)", ""]
    (RESULTS / "multiplicity.md").write_text("\n".join(md))
    print(f"wrote {RESULTS / 'multiplicity.md'} in {meta['seconds']:.0f} s")


if __name__ == "__main__":
    main()
