"""KnockoffNets adaptive vs random on a pool that mixes MNIST with KMNIST (out-of-domain).

The target is the project's MNIST CNN trained 3 epochs on ``target_train``. The attacker's pool
is 10,000 rows of the MNIST ``attacker_pool`` and the 10,000 KMNIST test images, shuffled
together (the attacker does not know which is which); ``--mnist-rows`` and ``--ood-rows`` change
the mix. The adaptive strategy's arms are k-means clusters of the pool, or with ``--groups
source`` the data set each pool image came from (the attacker's own coarse labels: it assembled
the pool from two sources, without knowing which matches the target). Both strategies query the
same pool at the
same budgets, with the same substitute trainer, for each seed. Reported: fidelity and accuracy on
the MNIST test set, the share of MNIST rows among the queries, and the policy's mass on the
clusters that are mostly MNIST. Writes ``benchmarks/results/knockoff_adaptive.{json,md,png}``.
About 9 minutes on 2 shared CPU cores (3 once the target is cached in runs/).

    python benchmarks/knockoff_adaptive.py [--data-dir DIR] [--seeds 0 1] [--budgets 1000 2000 4000]
        [--mnist-rows 2000 --ood-rows 10000 --tag _mnist2k] [--groups source] [--labels-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from modelsteal.attacks import build_recipe, extract
from modelsteal.attacks.recipes import knockoff_adaptive_orekondy_2019  # noqa: F401 (registers)
from modelsteal.data import load_splits
from modelsteal.models import (
    ModelInfo,
    TrainConfig,
    build_model,
    load_model,
    predict_proba,
    save_model,
    train_model,
)
from modelsteal.targets import TorchTarget, label_only

HERE = Path(__file__).resolve().parent
COMMAND = "python benchmarks/knockoff_adaptive.py"
SUBSTITUTE = {"epochs": 10, "min_steps": 300}
ADAPTIVE = {"n_clusters": 20, "reward": "all", "alpha": 0.05, "pull_size": 32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MODELSTEAL_DATA"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--budgets", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--work", type=Path, default=Path("runs/bench_knockoff_adaptive"))
    parser.add_argument(
        "--retrain-every",
        type=int,
        default=None,
        help="extra substitute retraining for the loss reward (default: only at the budgets)",
    )
    parser.add_argument("--reward", default=ADAPTIVE["reward"])
    parser.add_argument("--alpha", type=float, default=ADAPTIVE["alpha"])
    parser.add_argument("--n-clusters", type=int, default=ADAPTIVE["n_clusters"])
    parser.add_argument(
        "--mnist-rows", type=int, default=10_000, help="in-domain rows of the pool (MNIST)"
    )
    parser.add_argument(
        "--ood-rows", type=int, default=10_000, help="out-of-domain rows of the pool (KMNIST)"
    )
    parser.add_argument("--tag", default="", help="suffix of the result files' names")
    parser.add_argument(
        "--labels-only", action="store_true", help="the target answers top-1 labels only"
    )
    parser.add_argument(
        "--groups",
        choices=("kmeans", "source"),
        default="kmeans",
        help="the bandit's arms: k-means clusters of the pool, or the data set each pool image "
        "came from (coarse labels the attacker has: it assembled the pool)",
    )
    parser.add_argument(
        "--fine-clusters",
        type=int,
        default=0,
        help="a second level: each group cut into this many k-means clusters (0: one level)",
    )
    args = parser.parse_args()
    adaptive = ADAPTIVE | {
        "reward": args.reward,
        "alpha": args.alpha,
        "n_clusters": args.n_clusters,
        "fine_clusters": args.fine_clusters,
    }
    if not args.data_dir:
        sys.exit("Set MODELSTEAL_DATA or pass --data-dir: the MNIST and KMNIST files are needed.")
    torch.set_num_threads(2)
    started = time.perf_counter()

    splits = load_splits("mnist", data_dir=args.data_dir, ood="kmnist", seed=0)
    cached = args.work / "mnist_cnn_3ep.pt"
    if cached.is_file():  # the target is trained once and reused (runs/ is not committed)
        model, _ = load_model(cached)
    else:
        model = build_model("cnn", splits.input_shape, splits.n_classes, seed=0)
        train_model(
            model,
            splits.target_train.X,
            splits.target_train.y,
            config=TrainConfig(epochs=3),
            seed=0,
        )
        save_model(cached, model, ModelInfo("cnn", splits.input_shape, splits.n_classes))
    target = TorchTarget(model, input_shape=splits.input_shape)
    test_x, test_y = splits.target_test.X, splits.target_test.y
    target_acc = float((predict_proba(model, test_x).argmax(1) == test_y).mean())
    eval_target = target.query(test_x)
    print(
        f"target test accuracy {target_acc:.4f} ({time.perf_counter() - started:.0f} s)", flush=True
    )

    mix = np.random.default_rng(12345)
    if not 0 < args.mnist_rows <= len(splits.attacker_pool) or not 0 <= args.ood_rows <= len(
        splits.ood
    ):
        sys.exit(
            f"--mnist-rows must be in [1, {len(splits.attacker_pool)}] and --ood-rows in "
            f"[0, {len(splits.ood)}]; got {args.mnist_rows} and {args.ood_rows}."
        )
    mnist = splits.attacker_pool.X[
        mix.choice(len(splits.attacker_pool), args.mnist_rows, replace=False)
    ]
    kmnist = splits.ood.X[: args.ood_rows]
    order = mix.permutation(len(mnist) + len(kmnist))
    pool = np.concatenate([mnist, kmnist])[order]
    in_domain = order < len(mnist)  # analysis only, unless --groups source hands it over
    if args.groups == "source":
        adaptive["coarse_labels"] = in_domain.astype(np.int64)

    rows, curves = [], {}
    for seed in args.seeds:
        for name, params in (
            ("random", {}),
            ("adaptive", {**adaptive, "retrain_every": args.retrain_every}),
        ):
            recipe = build_recipe(
                "knockoff" if name == "random" else "knockoff_adaptive", **SUBSTITUTE, **params
            )
            t0 = time.perf_counter()
            result = extract(
                label_only(target) if args.labels_only else target,
                recipe,
                pool=pool,
                budget=max(args.budgets),
                seed=seed,
                schedule=args.budgets,
                eval_x=test_x,
                eval_y=test_y,
                eval_target=eval_target,
                domain=splits.domain,
            )
            seconds = time.perf_counter() - t0
            queried_in = _in_domain_of_queries(result.queried_x, pool, in_domain)
            run = result.info.get("knockoff_adaptive")
            mostly_mnist = None
            if run is not None:
                groups = run["groups"]
                n_leaves = len(run["group_sizes"])
                share = np.bincount(groups, weights=in_domain, minlength=n_leaves)
                share /= np.bincount(groups, minlength=n_leaves)
                mostly_mnist = share > 0.5
                pis = np.array(run["policy"])
                curves[seed] = {
                    "queries": np.cumsum([len(a) for a in run["actions"]]).tolist(),
                    "mass_mnist_clusters": pis[:, mostly_mnist].sum(axis=1).tolist(),
                    "policy": pis.tolist(),
                    "cluster_mnist_share": share.tolist(),
                }
            for h in result.history:
                q = int(h["queries"])
                row = {
                    "strategy": name,
                    "seed": seed,
                    "queries": q,
                    "fidelity": h["fidelity"],
                    "accuracy": h["accuracy"],
                    "mnist_share": float(queried_in[:q].mean()),
                }
                if run is not None:
                    pulls = int(np.searchsorted(curves[seed]["queries"], q, side="left"))
                    pulls = min(pulls, len(run["policy"]) - 1)
                    row["policy_mass_mnist_clusters"] = float(
                        np.asarray(run["policy"][pulls])[mostly_mnist].sum()
                    )
                    row["pool_mass_mnist_clusters"] = float(
                        np.bincount(groups)[mostly_mnist].sum() / len(groups)
                    )
                rows.append(row)
                print(row, flush=True)
            print(f"{name} seed {seed}: {seconds:.0f} s", flush=True)

    summary = _summary(rows, args.budgets)
    result = {
        "target_test_accuracy": target_acc,
        "pool": {"mnist": len(mnist), "kmnist": len(kmnist)},
        "adaptive": {k: v for k, v in adaptive.items() if k != "coarse_labels"}
        | {"retrain_every": args.retrain_every, "groups": args.groups},
        "substitute": SUBSTITUTE,
        "seeds": args.seeds,
        "rows": rows,
        "summary": summary,
        "policy_curves": curves,
        "seconds": time.perf_counter() - started,
        "command": " ".join([COMMAND, *sys.argv[1:]]),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor(),
        },
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"knockoff_adaptive{args.tag}.json").write_text(json.dumps(result, indent=2))
    md = _markdown(result)
    (out / f"knockoff_adaptive{args.tag}.md").write_text(md)
    _plot(curves, out / f"knockoff_adaptive{args.tag}.png")
    print(md)


def _in_domain_of_queries(queried: np.ndarray, pool: np.ndarray, in_domain: np.ndarray):
    """Which queried rows are MNIST rows, by matching them back to the pool (exact copies)."""
    flat = pool.reshape(len(pool), -1)
    index = {flat[i].tobytes(): i for i in range(len(flat))}
    rows = [index[q.tobytes()] for q in queried.reshape(len(queried), -1)]
    return in_domain[np.array(rows)]


def _summary(rows: list[dict], budgets: list[int]) -> list[dict]:
    out = []
    for budget in budgets:
        for name in ("random", "adaptive"):
            sel = [r for r in rows if r["strategy"] == name and r["queries"] == budget]
            entry = {"strategy": name, "queries": budget, "runs": len(sel)}
            for key in ("fidelity", "accuracy", "mnist_share", "policy_mass_mnist_clusters"):
                vals = [r[key] for r in sel if key in r]
                if vals:
                    entry[key] = float(np.mean(vals))
                    entry[key + "_std"] = float(np.std(vals))
            out.append(entry)
    return out


def _markdown(result: dict) -> str:
    lines = [
        f"target test accuracy: {result['target_test_accuracy']:.4f}; pool: "
        f"{result['pool']['mnist']} MNIST + {result['pool']['kmnist']} KMNIST rows, mixed; "
        f"seeds {result['seeds']}; adaptive: {result['adaptive']}",
        "",
        "| strategy | queries | fidelity | accuracy | MNIST share of queries | "
        "π mass on mostly-MNIST clusters |",
        "|---|---|---|---|---|---|",
    ]
    for e in result["summary"]:
        mass = e.get("policy_mass_mnist_clusters")
        lines.append(
            f"| {e['strategy']} | {e['queries']} | {e['fidelity']:.4f} ± {e['fidelity_std']:.4f} "
            f"| {e['accuracy']:.4f} ± {e['accuracy_std']:.4f} | {e['mnist_share']:.3f} | "
            + ("–" if mass is None else f"{mass:.3f}")
            + " |"
        )
    first = next(iter(result["policy_curves"].values()), None)
    if first is not None:
        n_mnist = sum(s > 0.5 for s in first["cluster_mnist_share"])
        lines += [
            "",
            f"Mostly-MNIST clusters (seed {result['seeds'][0]}): {n_mnist} of "
            f"{len(first['cluster_mnist_share'])}; under a uniform policy their mass would be "
            f"{n_mnist / len(first['cluster_mnist_share']):.2f}.",
        ]
    paired = []
    for budget in sorted({r["queries"] for r in result["rows"]}):
        by = {
            name: {
                r["seed"]: r["fidelity"]
                for r in result["rows"]
                if r["strategy"] == name and r["queries"] == budget
            }
            for name in ("random", "adaptive")
        }
        seeds = sorted(set(by["random"]) & set(by["adaptive"]))
        diff = np.array([by["adaptive"][s] - by["random"][s] for s in seeds])
        if len(diff) > 1:
            se = diff.std(ddof=1) / np.sqrt(len(diff))
            paired.append(
                f"{budget}: {diff.mean():+.4f} ± {se:.4f} (ahead in {(diff > 0).sum()}/{len(diff)})"
            )
    if paired:
        lines += [
            "",
            "Paired fidelity, adaptive − random (mean ± SE over seeds): " + "; ".join(paired) + ".",
        ]
    peaks = [
        (max(c["mass_mnist_clusters"]), c["queries"][int(np.argmax(c["mass_mnist_clusters"]))])
        for c in result["policy_curves"].values()
    ]
    if peaks:
        lines += [
            "",
            "Peak π mass on the mostly-MNIST clusters per seed (and the queries by then): "
            + ", ".join(f"{m:.3f} ({q})" for m, q in peaks)
            + ". A cluster whose rows have all been queried gets π = 0 from then on.",
        ]
    lines += ["", f"Total time {result['seconds']:.0f} s. Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def _plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for seed, c in curves.items():
        axes[0].plot(c["queries"], c["mass_mnist_clusters"], label=f"seed {seed}")
    axes[0].set(
        xlabel="queries",
        ylabel="π mass on mostly-MNIST clusters",
        title="Policy preference for in-domain clusters",
        ylim=(0, 1),
    )
    axes[0].legend()
    seed, c = next(iter(curves.items()))
    pis = np.array(c["policy"])
    share = np.array(c["cluster_mnist_share"])
    cmap = plt.get_cmap("coolwarm")
    for g in np.argsort(share):
        axes[1].plot(c["queries"], pis[:, g], color=cmap(share[g]), lw=1)
    axes[1].set(
        xlabel="queries",
        ylabel="π(cluster)",
        title=f"π per cluster, seed {seed} (red: MNIST, blue: KMNIST)",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
