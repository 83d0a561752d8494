"""The provider's one-command audit: how well can my saved model be stolen, with and without
the defenses I am considering?

:func:`audit_config` writes a small grid for the user's model and data — the naive, top-1 and
partial Bayes attacks with KnockoffNets queries, at a few budgets scaled to the data, against no
defense and each chosen defense — as a TOML file that ``modelsteal run`` can re-run or edit;
:func:`audit` runs it and writes the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modelsteal.errors import InvalidParameterError
from modelsteal.experiments.config import load_config
from modelsteal.experiments.report import write_report
from modelsteal.experiments.runner import GridSummary, run_grid

DEFAULT_DEFENSES = ("top1", "rounding", "reverse_sigmoid", "modelguard_s")
DEFAULT_ATTACKS = (
    ("Naive", "knockoff", {}),
    ("Top-1", "knockoff", {"hard_labels": True}),
    ("Partial Bayes", "pbayes", {}),
)


def default_budgets(pool_rows: int) -> list[int]:
    """Four budgets from 5% to 80% of the attacker's pool (at least 20 rows each)."""
    return sorted({max(20, int(pool_rows * f)) for f in (0.05, 0.2, 0.4, 0.8)})


def audit_config(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    defenses: Sequence[str] = DEFAULT_DEFENSES,
    budgets: Sequence[int] | None = None,
    seeds: Sequence[int] = (0,),
    label_column: str = "label",
    test_fraction: float = 0.3,
    data_dir: str | None = None,
) -> Path:
    """Write the audit grid for ``model`` on ``data`` to ``out/audit.toml`` and return its path.

    ``data`` (a CSV/NPZ file or a registered data set) is split into a test set
    (``test_fraction``) and the attacker's pool; the model is taken as it is (never retrained).
    """
    from modelsteal.data import load_splits
    from modelsteal.defenses import DEFENSES

    model = Path(model).resolve()
    if not model.is_file():
        raise FileNotFoundError(f"No model file at {model}.")
    for name in defenses:
        DEFENSES.get(name)  # unknown names fail here, with the list of known ones
        if name == "am":
            raise InvalidParameterError(
                "The audit cannot add Adaptive Misinformation to a saved model: it needs a "
                "target retrained with outlier exposure. Use `modelsteal run` with a config."
            )
    name = str(data)
    if Path(name).suffix:
        name = str(Path(name).resolve())
    data_table = {
        "name": name,
        "test_fraction": test_fraction,
        "pool_fraction": 0.9,
        "label_column": label_column,
    }
    if budgets is None:
        splits = load_splits(
            name,
            data_dir=data_dir,
            test_fraction=test_fraction,
            pool_fraction=0.9,
            label_column=label_column,
            ood=None,
        )
        budgets = default_budgets(len(splits.attacker_pool))
    raw: dict[str, Any] = {
        "name": "audit",
        "description": f"Audit of {model.name} on {Path(name).name}",
        "seeds": list(seeds),
        "data": data_table,
        "target": {"path": str(model)},
        "attack": {"budgets": sorted(set(budgets))},
        "defenses": [{"name": "none", "label": "None"}]
        + [{"name": d, "label": d} for d in defenses if d != "none"],
        "attacks": [
            {"label": label, "recipe": recipe, "params": params}
            for label, recipe, params in DEFAULT_ATTACKS
        ],
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "audit.toml"
    path.write_text(to_toml(raw))
    return path


def audit(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    data_dir: str | None = None,
    progress: Callable | None = None,
    log_line: Callable[[str], None] | None = None,
    **options: Any,
) -> tuple[GridSummary, dict[str, Path]]:
    """Write the audit grid, run it into ``out`` and write the report there."""
    path = audit_config(model, data, out, data_dir=data_dir, **options)
    extra = {"log_line": log_line} if log_line else {}
    summary = run_grid(
        load_config(path), out, workers=workers, data_dir=data_dir, progress=progress, **extra
    )
    return summary, write_report(out)


def to_toml(raw: Mapping[str, Any]) -> str:
    """A TOML text for a config of plain values (tables, arrays of tables, inline tables)."""
    lines: list[str] = []
    scalars = {
        k: v
        for k, v in raw.items()
        if not isinstance(v, Mapping | list)
        or (isinstance(v, list) and not any(isinstance(i, Mapping) for i in v))
    }
    for key, value in scalars.items():
        lines.append(f"{key} = {_value(value)}")
    for key, value in raw.items():
        if isinstance(value, Mapping):
            lines += ["", f"[{key}]"] + [f"{k} = {_value(v)}" for k, v in value.items()]
    for key, value in raw.items():
        if isinstance(value, list) and any(isinstance(i, Mapping) for i in value):
            for item in value:
                lines += ["", f"[[{key}]]"] + [f"{k} = {_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise InvalidParameterError(f"Cannot write {value!r} ({type(value).__name__}) to TOML.")
