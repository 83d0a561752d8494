"""Reports from a result store: tables (Markdown, HTML, CSV) and plots (PNG).

- **The attack × defense matrix** in the layout of Tang et al. (2024), Table 2: one row per
  (query strategy, attack) with its extraction accuracy against each defense setting (mean ± std
  over seeds), then per defense the maximum extraction accuracy and fidelity over all attacks,
  the maximum ℓ1 distortion of its answers on the test set and its protected accuracy.
- **Privacy–utility curves** (their Figure 3): extraction accuracy against each swept parameter.
- **Accuracy and fidelity against queries**, one panel per defense setting.
- **Stateful defenses** (ModelGuard-S; their Figures 4–5): centroids against queries, and
  extraction accuracy and mean recovery distance ‖ỹ − y‖₂ against the number of centroids.

Every function reads plain rows (:meth:`ResultStore.rows`) and writes files; nothing is
recomputed.
"""

from __future__ import annotations

import html
import json
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelsteal.experiments.store import ResultStore
from modelsteal.reports import markdown_table, write_csv


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell_text(mean: float, std: float, n: int) -> str:
    if mean != mean:  # nan
        return "—"
    return f"{mean:.4f}" if n <= 1 else f"{mean:.4f} ± {std:.4f}"


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Group the store's rows: attack results per (defense, strategy, attack), utility per
    defense, in the order the cells were defined."""
    defenses: list[str] = []
    attacks: list[tuple[str, str]] = []
    utility: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        labels = row["labels"]
        if labels["defense"] not in defenses:
            defenses.append(labels["defense"])
        if row["kind"] == "utility":
            utility[labels["defense"]] = {**row["result"], "labels": labels, "spec": row["spec"]}
            continue
        pair = (labels["strategy"], labels["attack"])
        if pair not in attacks:
            attacks.append(pair)
        groups[(labels["defense"], *pair)].append(row)
    return {"defenses": defenses, "attacks": attacks, "utility": utility, "groups": groups}


def attack_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (defense, strategy, attack): mean and std over seeds of the final numbers."""
    out = []
    for (defense, strategy, attack), cells in summary["groups"].items():
        row: dict[str, Any] = {
            "defense": defense,
            "strategy": strategy,
            "attack": attack,
            "seeds": len(cells),
        }
        labels = cells[0]["labels"]
        row["swept_param"] = labels.get("swept_param", "")
        row["swept_value"] = json.loads(labels["swept_value"]) if "swept_value" in labels else ""
        row["defense_entry"] = labels.get("defense_entry", defense)
        for metric in (
            "accuracy",
            "fidelity",
            "queries",
            "queried_max_l1",
            "recovery_l2",
            "centroids",
            "attack_seconds",
        ):
            values = [c["result"].get(metric) for c in cells if c["result"].get(metric) is not None]
            if values:
                row[metric], row[f"{metric}_std"] = _mean_std(values)
        out.append(row)
    return out


def matrix(summary: Mapping[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """The Table-2 layout as (columns, rows of text)."""
    defenses = summary["defenses"]
    rows = []
    best_acc: dict[str, float] = defaultdict(lambda: float("-inf"))
    best_fid: dict[str, float] = defaultdict(lambda: float("-inf"))
    for strategy, attack in summary["attacks"]:
        row = {"attack": f"{strategy} / {attack}"}
        for d in defenses:
            cells = summary["groups"].get((d, strategy, attack), [])
            acc = [c["result"].get("accuracy") for c in cells]
            fid = [c["result"].get("fidelity") for c in cells]
            mean, std = _mean_std(acc)
            row[d] = _cell_text(mean, std, len(cells))
            if cells:
                best_acc[d] = max(best_acc[d], mean)
                best_fid[d] = max(best_fid[d], _mean_std(fid)[0])
        rows.append(row)

    def summary_row(name: str, values: Mapping[str, float]) -> dict[str, str]:
        return {
            "attack": f"**{name}**",
            **{
                d: (
                    f"{values[d]:.4f}"
                    if d in values and values[d] > -1e300 and values[d] == values[d]
                    else "—"
                )
                for d in defenses
            },
        }

    util = summary["utility"]
    rows.append(summary_row("max accuracy", best_acc))
    rows.append(summary_row("max fidelity", best_fid))
    rows.append(summary_row("max ℓ1 distortion", {d: u["max_l1"] for d, u in util.items()}))
    rows.append(
        summary_row("protected accuracy", {d: u["protected_accuracy"] for d, u in util.items()})
    )
    if any("ood_auroc" in u for u in util.values()):
        rows.append(
            summary_row(
                "OOD AUROC", {d: u["ood_auroc"] for d, u in util.items() if "ood_auroc" in u}
            )
        )
    return ["attack", *defenses], rows


def utility_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for defense, u in summary["utility"].items():
        plain = {k: v for k, v in u.items() if isinstance(v, int | float | str)}
        out.append({**plain, "defense": defense})
    return out


# ----------------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_privacy_utility(
    path: Path, rows: Sequence[Mapping[str, Any]], utility: Mapping[str, Mapping[str, Any]]
) -> Path | None:
    """Extraction accuracy against the ℓ1 distortion of each swept defense setting, a line per
    defense and a panel per attack. The x-axis is the setting's measured maximum ℓ1 distortion on
    the test set (its utility cell), so defenses swept by different parameters (ε, β) share it;
    for MAD, ModelGuard-W and ModelGuard-S it equals (or stays within) the budget ε."""
    swept = [r for r in rows if r["swept_param"] and r["defense"] in utility]
    if not swept:
        return None
    lines: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in swept:
        key = (f"{r['defense_entry']} ({r['swept_param']})", f"{r['strategy']} / {r['attack']}")
        lines[key].append((utility[r["defense"]]["max_l1"], r.get("accuracy", float("nan"))))
    attacks = sorted({a for _, a in lines})
    plt = _plt()
    fig, axes = plt.subplots(1, len(attacks), figsize=(5.2 * len(attacks), 3.9), squeeze=False)
    for ax, attack in zip(axes[0], attacks, strict=True):
        for (defense, a), pts in sorted(lines.items()):
            if a == attack:
                xs, ys = zip(*sorted(pts), strict=True)
                ax.plot(xs, ys, marker="o", label=defense)
        ax.set_title(attack)
        ax.set_xlabel("max ℓ1 distortion of the answers (test set)")
        ax.set_ylabel("extraction accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_queries(path: Path, summary: Mapping[str, Any], *, metric: str) -> Path | None:
    """``metric`` against queries: one panel per defense setting, a line per attack."""
    defenses = [d for d in summary["defenses"] if any(k[0] == d for k in summary["groups"])]
    if not defenses:
        return None
    cols = min(4, len(defenses))
    n_rows = -(-len(defenses) // cols)
    single = len(defenses) == 1  # one larger panel with the legend inside (e.g. ActiveThief)
    plt = _plt()
    size = (9.0, 5.5) if single else (4.4 * cols, 3.3 * n_rows)
    fig, axes = plt.subplots(n_rows, cols, figsize=size, squeeze=False)
    n_lines = max(sum(1 for k in summary["groups"] if k[0] == d) for d in defenses)
    colors = plt.get_cmap("tab20" if n_lines > 10 else "tab10").colors
    several = len({k[1] for k in summary["groups"]}) > 1  # strategies: name them in the legend
    for ax, defense in zip(axes.flat, defenses, strict=False):
        ax.set_prop_cycle(color=colors)
        for (d, strategy, attack), cells in summary["groups"].items():
            if d != defense:
                continue
            by_q: dict[int, list[float]] = defaultdict(list)
            for c in cells:
                for h in c["result"]["history"]:
                    if metric in h:
                        by_q[int(h["queries"])].append(h[metric])
            if by_q:
                xs = sorted(by_q)
                ax.plot(
                    xs,
                    [statistics.fmean(by_q[q]) for q in xs],
                    marker=".",
                    label=f"{strategy} / {attack}" if several else attack,
                )
        ax.set_title(defense, fontsize=9)
        ax.set_xlabel("queries")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(defenses) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles and single:
        axes.flat[0].legend(fontsize=8, loc="lower right", ncol=2 if len(labels) > 6 else 1)
        fig.tight_layout()
    else:
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_centroids(
    path: Path, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> Path | None:
    """Left: centroids against queries (utility cells' traces). Right: extraction accuracy and
    mean recovery distance against the number of centroids (attack cells of stateful defenses)."""
    growth = {
        d: u["centroid_growth"] for d, u in summary["utility"].items() if u.get("centroid_growth")
    }
    if not growth:
        return None
    stateful = [r for r in rows if r.get("centroids") is not None]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for defense, trace in growth.items():
        axes[0].plot([t["queries"] for t in trace], [t["centroids"] for t in trace], label=defense)
    axes[0].set_xlabel("queries")
    axes[0].set_ylabel("centroids")
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    ax = axes[1]
    twin = ax.twinx()
    by_attack: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for r in stateful:
        by_attack[f"{r['strategy']} / {r['attack']}"].append(
            (r["centroids"], r.get("accuracy", float("nan")), r.get("recovery_l2", float("nan")))
        )
    for attack, pts in sorted(by_attack.items()):
        pts.sort()
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker="o", label=f"{attack}: accuracy")
        twin.plot(xs, [p[2] for p in pts], marker="x", linestyle="--", label=f"{attack}: ‖ỹ−y‖₂")
    ax.set_xlabel("centroids at the end of the attack")
    ax.set_ylabel("extraction accuracy")
    twin.set_ylabel("mean recovery distance ‖ỹ − y‖₂")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    if h1 or h2:
        ax.legend(h1 + h2, l1 + l2, fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- writing


def _html_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(r.get(c, '')).replace('**', ''))}</td>" for c in columns)
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _config_labels(config: tuple[str, str] | None) -> dict[str, dict[str, str]] | None:
    """Key → labels of the grid last run into the store (None: show every stored cell)."""
    if config is None or not config[0]:
        return None
    import tomllib

    from modelsteal.experiments.config import ConfigError, parse_config

    try:
        cells = parse_config(tomllib.loads(config[0]), source=config[1]).cells()
    except (ConfigError, tomllib.TOMLDecodeError):
        return None
    return {c.key: c.labels for c in cells}


def current_rows(store: ResultStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The finished and the failed rows of the grid last run into ``store``, labelled as that
    grid labels them (older grids' cells stay in the store but are not shown; a cell computed
    under an older label is shown under the current one)."""
    labels = _config_labels(store.latest_config())
    out = []
    for status in ("done", "failed"):
        rows = store.rows(status=status)
        if labels is not None:
            order = {key: i for i, key in enumerate(labels)}  # the config's order
            rows = [{**r, "labels": labels[r["key"]]} for r in rows if r["key"] in labels]
            rows.sort(key=lambda r: order[r["key"]])
        out.append(rows)
    return out[0], out[1]


def write_report(results: str | Path, out: str | Path | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, CSV tables and PNG plots for the store at
    ``results`` (a run folder or its ``results.sqlite``) into ``out`` (default: the folder)."""
    results = Path(results)
    db = results if results.suffix == ".sqlite" else results / "results.sqlite"
    if not db.is_file():
        raise FileNotFoundError(
            f"No result store at {db}. Pass the folder that `modelsteal run` wrote (its --out)."
        )
    out = Path(out) if out is not None else db.parent
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(db)
    config = store.latest_config()
    rows, failed = current_rows(store)
    summary = summarise(rows)
    per_attack = attack_rows(summary)
    columns, table = matrix(summary)
    util = utility_rows(summary)
    paths: dict[str, Path] = {}
    paths["matrix_csv"] = write_csv(out / "matrix.csv", table, columns)
    attack_cols = [
        "defense",
        "strategy",
        "attack",
        "seeds",
        "accuracy",
        "accuracy_std",
        "fidelity",
        "fidelity_std",
        "queries",
        "queried_max_l1",
        "recovery_l2",
        "centroids",
        "attack_seconds",
        "swept_param",
        "swept_value",
    ]
    paths["attacks_csv"] = write_csv(out / "attacks.csv", per_attack, attack_cols)
    util_cols = [
        "defense",
        "max_l1",
        "mean_l1",
        "clean_accuracy",
        "protected_accuracy",
        "argmax_kept",
        "ood_auroc",
        "clean_ood_auroc",
        "centroids",
    ]
    paths["utility_csv"] = write_csv(out / "utility.csv", util, util_cols)
    history = [
        {**r["labels"], "seed": r["spec"]["seed"], **h}
        for r in rows
        if r["kind"] == "attack"
        for h in r["result"]["history"]
    ]
    paths["history_csv"] = write_csv(
        out / "history.csv",
        history,
        ["defense", "strategy", "attack", "seed", "queries", "accuracy", "fidelity"],
    )
    plots = {
        "privacy_utility": plot_privacy_utility(
            out / "privacy_utility.png", per_attack, summary["utility"]
        ),
        "accuracy_vs_queries": plot_queries(
            out / "accuracy_vs_queries.png", summary, metric="accuracy"
        ),
        "fidelity_vs_queries": plot_queries(
            out / "fidelity_vs_queries.png", summary, metric="fidelity"
        ),
        "centroids": plot_centroids(out / "centroids.png", summary, per_attack),
    }
    paths.update({k: v for k, v in plots.items() if v is not None})
    seconds = sum(r["seconds"] or 0.0 for r in rows)
    md = [
        f"# Experiment report: {Path(config[1]).stem if config else db.parent.name}",
        "",
        f"{len(rows)} cells finished ({sum(r['kind'] == 'attack' for r in rows)} attack, "
        f"{sum(r['kind'] == 'utility' for r in rows)} utility), {len(failed)} failed; "
        f"{seconds / 60:.1f} minutes of cell time in total.",
        "",
        "## Extraction accuracy: attack × defense",
        "",
        "Each cell: extraction accuracy of the substitute on the target's test set at the full "
        "budget (mean ± std over seeds). Below the attacks: per defense, the strongest attack's "
        "accuracy and fidelity, the largest ℓ1 distortion of the defended answers on the test "
        "set, and the accuracy of the defended answers (protected accuracy).",
        "",
        markdown_table(table, columns),
        "## Defense utility",
        "",
        markdown_table(util, util_cols),
    ]
    for key, title in (
        ("privacy_utility", "Privacy–utility: extraction accuracy against ℓ1 distortion"),
        ("accuracy_vs_queries", "Accuracy against queries"),
        ("fidelity_vs_queries", "Fidelity against queries"),
        (
            "centroids",
            "Stateful defenses: centroid growth; accuracy and recovery against centroids",
        ),
    ):
        if key in paths:
            md += [f"## {title}", "", f"![{title}]({paths[key].name})", ""]
    if failed:
        md += ["## Failed cells", ""]
        for r in failed:
            md.append(f"- `{r['key']}` {r['labels']}: {r['error'].splitlines()[0]}")
        md.append("")
    md += ["## All attack cells", "", markdown_table(per_attack, attack_cols)]
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text("\n".join(md))
    body = [
        f"<h1>{html.escape(md[0][2:])}</h1>",
        f"<p>{html.escape(md[2])}</p>",
        "<h2>Extraction accuracy: attack × defense</h2>",
        _html_table(columns, table),
        "<h2>Defense utility</h2>",
        _html_table(util_cols, util),
    ]
    for key in ("privacy_utility", "accuracy_vs_queries", "fidelity_vs_queries", "centroids"):
        if key in paths:
            body.append(f'<h2>{key.replace("_", " ")}</h2><img src="{paths[key].name}">')
    body += ["<h2>All attack cells</h2>", _html_table(attack_cols, per_attack)]
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto}"
        "table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}"
    )
    paths["html"] = out / "report.html"
    paths["html"].write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style>"
        f"<title>modelsteal report</title></head><body>{''.join(body)}</body></html>"
    )
    return paths
