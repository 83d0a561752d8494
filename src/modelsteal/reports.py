"""Writing results for people: Markdown/CSV tables and PNG plots of accuracy against queries."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 and value != int(value) else f"{value:g}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_curves(
    path: Path,
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    metrics: Sequence[str] = ("accuracy", "fidelity"),
    reference: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """Plot each metric against queries, one line per curve; ``reference`` draws dashed levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for label, rows in curves.items():
            pts = [(r["queries"], r[metric]) for r in rows if metric in r]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", label=label)
        for name, level in (reference or {}).items():
            if metric in name:
                ax.axhline(level, linestyle="--", color="grey", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("queries")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_extraction_report(
    out_dir: str | Path,
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    meta: Mapping[str, Any],
    title: str,
) -> dict[str, Path]:
    """Write ``history.csv``, ``history.md``, ``curves.png`` and ``run.json`` into ``out_dir``.

    ``curves`` maps a label (e.g. ``"soft labels"``) to its history rows
    (``queries``, ``accuracy``, ``fidelity``…).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"attack": label, **row} for label, hist in curves.items() for row in hist]
    columns = ["attack", "queries", "accuracy", "fidelity"]
    if any("train_seconds" in r for r in rows):
        columns.append("train_seconds")
    md = [f"# {title}\n"]
    md += [f"- {k}: {_fmt(v)}" for k, v in meta.items() if not isinstance(v, Mapping | list)]
    md.append("")
    md.append(markdown_table(rows, columns))
    paths = {
        "csv": write_csv(out / "history.csv", rows, columns),
        "markdown": out / "history.md",
        "plot": plot_curves(
            out / "curves.png",
            curves,
            reference={
                k: v for k, v in meta.items() if k.startswith("target") and isinstance(v, float)
            },
            title=title,
        ),
        "json": out / "run.json",
    }
    paths["markdown"].write_text("\n".join(md))
    paths["json"].write_text(json.dumps({"meta": dict(meta), "curves": curves}, indent=2))
    return paths
