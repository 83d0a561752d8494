"""Writing a multiplicity study for people: Markdown, CSV, JSON and three PNG plots."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelsteal.multiplicity.fairness import FAIRNESS_METRICS
from modelsteal.multiplicity.tasks import SHORT, MultiplicityResult
from modelsteal.reports import markdown_table, write_csv

_FAIR_TITLES = {"dp": "DP diff.", "eodds": "EOdds diff.", "eopp": "EOpp diff."}


def _f(v: float, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _interval(lo: float, hi: float, digits: int = 3) -> str:
    return f"[{_f(lo, digits)}, {_f(hi, digits)}]"


def sensitive_attributes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The sensitive attributes that have fairness columns in ``rows``."""
    found = []
    for key in rows[0] if rows else {}:
        if key.endswith(".dp.target"):
            found.append(key[: -len(".dp.target")])
    return found


def multiplicity_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Set size, fidelity range, ambiguity, discrepancy and Rashomon-capacity quantiles."""
    out = [
        {
            "sampler": r["sampler"],
            "criterion": r["criterion"],
            "ε": f"{r['epsilon']:g}",
            "set": f"{r['set_size']}/{r['n_sampled']}",
            "fidelity": _interval(r["fidelity_min"], r["fidelity_max"]),
            "accuracy": _interval(r["accuracy_min"], r["accuracy_max"]),
            "amb. (h0)": _f(r["ambiguity_base"]),
            "disc. (h0)": _f(r["discrepancy_base"]),
            "amb. (target)": _f(r["ambiguity_target"]),
            "disc. (target)": _f(r["discrepancy_target"]),
            "RC mean": _f(r["rc_mean"]),
            "RC q50/q90/q99": "/".join(_f(r[f"rc_{q}"]) for q in ("q50", "q90", "q99")),
        }
        for r in rows
    ]
    return markdown_table(out, list(out[0]) if out else [])


def fairness_table(rows: Sequence[Mapping[str, Any]], attr: str) -> str:
    """For one sensitive attribute: the target's value beside the set's [min, max] (std)."""
    out = []
    for r in rows:
        line = {
            "sampler": r["sampler"],
            "criterion": r["criterion"],
            "ε": f"{r['epsilon']:g}",
            "set": str(r["set_size"]),
            "fidelity": _interval(r["fidelity_min"], r["fidelity_max"]),
        }
        for short, title in _FAIR_TITLES.items():
            k = f"{attr}.{short}"
            line[f"{title} target"] = _f(r[f"{k}.target"])
            line[f"{title} set [min, max] (std)"] = (
                f"{_interval(r[f'{k}.min'], r[f'{k}.max'])} ({_f(r[f'{k}.std'])})"
            )
        out.append(line)
    return markdown_table(out, list(out[0]) if out else [])


def _plots(result: MultiplicityResult, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result.config
    run = result.runs[0]
    eps_max = cfg.rashomon.epsilons[-1]
    crit0 = cfg.rashomon.criterion[0]
    first = [r for r in run.rows if r["criterion"] == crit0]
    files = {}

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, rc in run.rc_samples.items():
        v = np.sort(rc)
        ax.plot(np.linspace(0, 1, len(v)), v, label=name)
    ax.set_xlabel("fraction of evaluation samples (sorted)")
    ax.set_ylabel("Rashomon capacity")
    ax.set_title(f"{cfg.task}: per-sample RC, {crit0} ε={eps_max:g} (seed {run.seed})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files["rc_distribution"] = out / "rc_distribution.png"
    fig.savefig(files["rc_distribution"], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, title in zip(
        axes, ("ambiguity", "discrepancy"), ("ambiguity", "discrepancy"), strict=True
    ):
        for name in cfg.rashomon.samplers:
            pts = [r for r in first if r["sampler"] == name]
            eps = [r["epsilon"] for r in pts]
            ax.plot(eps, [r[f"{metric}_base"] for r in pts], marker="o", label=f"{name} vs h0")
            ax.plot(
                eps,
                [r[f"{metric}_target"] for r in pts],
                marker="x",
                linestyle="--",
                label=f"{name} vs target",
            )
        ax.set_xlabel(f"ε ({crit0})")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{cfg.task}: multiplicity against ε (seed {run.seed})")
    fig.tight_layout()
    files["multiplicity_vs_epsilon"] = out / "multiplicity_vs_epsilon.png"
    fig.savefig(files["multiplicity_vs_epsilon"], dpi=110)
    plt.close(fig)

    attrs = sensitive_attributes(first)
    if attrs:
        shorts = [SHORT[m] for m in FAIRNESS_METRICS[:3]]
        fig, axes = plt.subplots(
            len(attrs), len(shorts), figsize=(4.2 * len(shorts), 3.4 * len(attrs)), squeeze=False
        )
        members = [r for r in run.model_rows if not math.isnan(r[f"in_set_from_eps_{crit0}"])]
        target_row = first[-1]
        for i, attr in enumerate(attrs):
            for j, short in enumerate(shorts):
                ax = axes[i][j]
                for name in cfg.rashomon.samplers:
                    pts = [r for r in members if r["sampler"] == name]
                    ax.scatter(
                        [r["fidelity"] for r in pts],
                        [r[f"{attr}.{short}"] for r in pts],
                        s=12,
                        alpha=0.7,
                        label=name,
                    )
                ax.axhline(
                    target_row[f"{attr}.{short}.target"], color="k", linestyle="--", label="target"
                )
                ax.set_xlabel("fidelity to the target")
                ax.set_ylabel(f"{_FAIR_TITLES[short]} ({attr})")
                ax.grid(alpha=0.3)
                if i == 0 and j == 0:
                    ax.legend(fontsize=7)
        fig.suptitle(
            f"{cfg.task}: fairness of the Rashomon set ({crit0} ε={eps_max:g}) against fidelity"
        )
        fig.tight_layout()
        files["fairness_vs_fidelity"] = out / "fairness_vs_fidelity.png"
        fig.savefig(files["fairness_vs_fidelity"], dpi=110)
        plt.close(fig)
    return files


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(
    result: MultiplicityResult, out: str | Path, *, command: str | None = None
) -> dict[str, Path]:
    """Write ``report.md``, ``summary.csv``, ``models.csv``, ``result.json`` and the PNG plots."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    rows, model_rows = result.rows, result.model_rows
    files = {
        "summary_csv": write_csv(out / "summary.csv", rows, _columns(rows)),
        "models_csv": write_csv(out / "models.csv", model_rows, _columns(model_rows)),
    }
    files.update(_plots(result, out))
    runs = [
        {
            "seed": run.seed,
            "target_accuracy": run.target_accuracy,
            "base_fidelity": run.base_fidelity,
            "base_accuracy": run.base_accuracy,
            "n_eval": run.n_eval,
            "n_queries": run.n_queries,
            "timings_s": run.timings,
        }
        for run in result.runs
    ]
    meta = {
        "command": command,
        "seconds": result.seconds,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    files["json"] = out / "result.json"
    files["json"].write_text(
        json.dumps(
            _jsonable({"config": cfg.as_dict(), "meta": meta, "runs": runs, "rows": rows}),
            indent=2,
        )
    )
    rs = cfg.rashomon
    md = [
        f"# Multiplicity of stolen surrogates: {cfg.task}",
        "",
        *([f"Made by `{command}`.", ""] if command else []),
        f"Target `{cfg.target.arch}` {cfg.target.params or ''}; surrogate `{cfg.surrogate.arch}` "
        f"{cfg.surrogate.params or ''}; {cfg.attack.budget} queries answered with "
        f"{cfg.attack.answers}, {cfg.attack.holdout_fraction:g} of them held out for the ε "
        f"filter; samplers {', '.join(rs.samplers)} with {rs.n_models} models each (plus the base "
        f"surrogate h0); Rashomon set: held-out {' or '.join(rs.criterion)} within ε of "
        f"{'h0' if rs.reference == 'base' else 'the best model'}. Metrics on the target's test "
        "rows; ambiguity and discrepancy against h0's decisions and against the target's.",
        "",
        markdown_table(
            runs,
            ["seed", "target_accuracy", "base_fidelity", "base_accuracy", "n_eval", "n_queries"],
        ),
        "Sampling time (s): "
        + "; ".join(
            f"seed {r['seed']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings_s"].items())
            for r in runs
        ),
        "",
    ]
    for run in result.runs:
        md += [f"## Seed {run.seed}: multiplicity", "", multiplicity_table(run.rows)]
        for attr in sensitive_attributes(run.rows):
            md += [
                f"### Seed {run.seed}: group fairness by {attr}",
                "",
                f"Groups with fewer than {cfg.data.min_group_size} evaluation rows are left out.",
                "",
                fairness_table(run.rows, attr),
            ]
    md += ["## Plots", ""]
    md += [f"![{name}]({path.name})" for name, path in files.items() if path.suffix == ".png"]
    files["markdown"] = out / "report.md"
    files["markdown"].write_text("\n".join(md) + "\n")
    return files
