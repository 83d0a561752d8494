"""Experiment configs: a TOML file describing one grid, validated, and expanded into cells.

A config names a data set and its splits, one target, the defenses (with optional parameter
sweeps), the query strategies, the attacks, the query budgets and the seeds. The grid is the
product defenses × strategies × attacks × seeds, plus one *utility* cell per defense setting (the
defense's cost to honest users, independent of any attack). Each cell is a plain dict; its key is
the SHA-256 of its canonical JSON without the cosmetic labels, so a cell is identified by what it
computes, and re-running a config finds the cells it has already finished.

Format (every table but ``[data]``, ``[[defenses]]`` and ``[[attacks]]`` is optional)::

    name = "modelguard_mnist"
    seeds = [0]

    [data]                     # modelsteal.data.load_splits arguments
    name = "mnist"             # registered name, or a CSV/NPZ path
    pool_fraction = 0.5
    ood = "kmnist"             # OOD set for the AUROC (and AM's outlier exposure)

    [target]                   # trained once per grid and cached; or path = "model.pt"
    arch = "cnn"
    epochs = 5

    [attack]                   # shared by every attack cell
    budgets = [1000, 5000]     # evaluation points; the last one is the budget
    side_data = 300            # labelled pool rows the attacker owns (D-DAE's shadows)
    params = { epochs = 10 }   # recipe parameters given to every recipe that takes them

    [[defenses]]
    name = "mad"
    params = { epsilon = 1.0, oracle = "argmax" }
    sweep = { epsilon = [0.25, 0.5, 1.0] }   # one cell per value

    [[strategies]]             # given to recipes that take ``strategy``; default: random pool
    name = "jbda_tr"

    [[attacks]]
    label = "Partial Bayes"
    recipe = "pbayes"          # adaptive recipes are told the cell's defense (Kerckhoffs)
"""

from __future__ import annotations

import hashlib
import inspect
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelsteal.errors import InvalidParameterError, ModelStealError, UnknownNameError

CELL_FORMAT = 1
"""Bumped when what a cell computes changes, so old results are not mistaken for new ones."""


class ConfigError(ModelStealError, ValueError):
    """A config file is malformed; the message names the offending key."""


TOP_KEYS = {
    "name",
    "description",
    "seeds",
    "data",
    "target",
    "attack",
    "defenses",
    "strategies",
    "attacks",
    "threads",
    "trace",
}
DATA_KEYS = {
    "name",
    "split_seed",
    "pool_fraction",
    "test_fraction",
    "max_train",
    "label_column",
    "ood",
}
TARGET_KEYS = {
    "arch",
    "path",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "seed",
    "params",
    "outlier_fraction",
}
ATTACK_KEYS = {"budgets", "side_data", "params", "labels_only"}
DEFENSE_KEYS = {"name", "label", "params", "sweep", "outlier_exposure"}
STRATEGY_KEYS = {"name", "label", "params"}
ATTACKS_KEYS = {"label", "recipe", "params", "labels_only"}
TRACE_KEYS = {"rows", "step"}


@dataclass(frozen=True)
class Cell:
    """One unit of work: ``spec`` says what to compute, ``labels`` how to show it."""

    key: str
    kind: str  # "attack" or "utility"
    spec: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentConfig:
    """A validated config: plain values only (``raw`` is the parsed TOML)."""

    name: str
    data: dict[str, Any]
    target: dict[str, Any]
    attack: dict[str, Any]
    defenses: list[dict[str, Any]]
    strategies: list[dict[str, Any]]
    attacks: list[dict[str, Any]]
    seeds: list[int]
    threads: int = 1
    trace: dict[str, int] = field(default_factory=dict)
    description: str = ""
    source: str = ""

    def cells(self) -> list[Cell]:
        return expand(self)


def cell_key(spec: Mapping[str, Any]) -> str:
    text = json.dumps({"format": CELL_FORMAT, **spec}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate the TOML config at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No config file at {path}. Pass the path of a .toml file.")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from None
    return parse_config(raw, source=str(path))


def parse_config(raw: Mapping[str, Any], *, source: str = "<config>") -> ExperimentConfig:
    """Validate a parsed config; every error names the key, e.g. ``defenses[2].sweep``."""
    where = source
    _keys(raw, TOP_KEYS, where, "")
    for required in ("data", "defenses", "attacks"):
        if required not in raw:
            raise ConfigError(f"{where}: missing [{required}] (see modelsteal.experiments.config).")
    name = _typed(raw.get("name", Path(source).stem), str, where, "name")
    seeds = _int_list(raw.get("seeds", [0]), where, "seeds", low=0)

    data = dict(_table(raw["data"], where, "data"))
    _keys(data, DATA_KEYS, where, "data")
    if "name" not in data:
        raise ConfigError(f"{where}: data.name is required (a registered data set or a path).")
    _typed(data["name"], str, where, "data.name")
    from modelsteal.data import DATASETS

    if data["name"] not in DATASETS and not Path(data["name"]).suffix:
        raise ConfigError(
            f"{where}: data.name {data['name']!r} is neither a registered data set "
            f"({', '.join(sorted(DATASETS))}) nor a CSV/NPZ path."
        )

    target = dict(_table(raw.get("target", {}), where, "target"))
    _keys(target, TARGET_KEYS, where, "target")
    if "path" in target and "arch" in target:
        raise ConfigError(f"{where}: give target.path (a saved model) or target.arch, not both.")
    target.setdefault("seed", 0)
    if "path" not in target:
        from modelsteal.models import MODELS

        arch = target.setdefault("arch", "auto")
        if arch != "auto" and arch not in MODELS:
            raise ConfigError(
                f"{where}: target.arch {arch!r} is unknown. "
                f"Known: auto, {', '.join(sorted(MODELS))}."
            )
        target.setdefault("epochs", 10)
        target.setdefault("batch_size", 64)
        target.setdefault("lr", 1e-3)

    attack = dict(_table(raw.get("attack", {}), where, "attack"))
    _keys(attack, ATTACK_KEYS, where, "attack")
    attack["budgets"] = sorted(
        set(_int_list(attack.get("budgets", [1000]), where, "attack.budgets", low=1))
    )
    attack["side_data"] = _int(attack.get("side_data", 0), where, "attack.side_data", low=0)
    attack["params"] = dict(_table(attack.get("params", {}), where, "attack.params"))

    defenses = _entries(raw, "defenses", DEFENSE_KEYS, where, name_key="name")
    from modelsteal.defenses import DEFENSES

    for i, d in enumerate(defenses):
        if d["name"] not in DEFENSES:
            raise ConfigError(
                f"{where}: defenses[{i}].name: {_unknown('defense', d['name'], DEFENSES)}"
            )
        sweep = dict(_table(d.get("sweep", {}), where, f"defenses[{i}].sweep"))
        if len(sweep) > 1:
            raise ConfigError(
                f"{where}: defenses[{i}].sweep sweeps {sorted(sweep)}; sweep one parameter per "
                "entry (add another [[defenses]] entry for another parameter)."
            )
        for key, values in sweep.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(
                    f"{where}: defenses[{i}].sweep.{key} must be a non-empty list of values."
                )
        d["sweep"] = sweep
        for key, values in sweep.items():
            for value in values:
                _check_params(d["name"], {**d["params"], key: value}, where, f"defenses[{i}]")
        if not sweep:
            _check_params(d["name"], d["params"], where, f"defenses[{i}]")

    strategies = _entries(
        raw,
        "strategies",
        STRATEGY_KEYS,
        where,
        name_key="name",
        default=[{"name": "random", "label": "KnockoffNets"}],
    )
    from modelsteal.attacks import STRATEGIES

    for i, s in enumerate(strategies):
        if s["name"] not in STRATEGIES:
            raise ConfigError(
                f"{where}: strategies[{i}].name: {_unknown('strategy', s['name'], STRATEGIES)}"
            )

    attacks = _entries(raw, "attacks", ATTACKS_KEYS, where, name_key="recipe")
    from modelsteal.attacks import RECIPES

    for i, a in enumerate(attacks):
        if a["recipe"] not in RECIPES:
            raise ConfigError(
                f"{where}: attacks[{i}].recipe: {_unknown('recipe', a['recipe'], RECIPES)}"
            )
        builder = RECIPES.get(a["recipe"])
        params = {**attack["params"], **a["params"]}
        accepted = set(inspect.signature(builder).parameters)
        unknown = sorted(set(a["params"]) - accepted)
        if unknown:
            raise ConfigError(
                f"{where}: attacks[{i}].params: recipe {a['recipe']!r} takes no parameter "
                f"{', '.join(unknown)}. It takes: {', '.join(sorted(accepted))}."
            )
        a["shared"] = {k: v for k, v in params.items() if k in accepted and k not in a["params"]}
        if len(strategies) > 1 or strategies[0]["name"] != "random":
            if "strategy" not in accepted:
                raise ConfigError(
                    f"{where}: attacks[{i}] (recipe {a['recipe']!r}) cannot take the query "
                    "strategies of [[strategies]]: it has no 'strategy' parameter."
                )

    trace = dict(_table(raw.get("trace", {}), where, "trace"))
    _keys(trace, TRACE_KEYS, where, "trace")
    trace = {k: _int(v, where, f"trace.{k}", low=1) for k, v in trace.items()}
    threads = _int(raw.get("threads", 1), where, "threads", low=1)
    return ExperimentConfig(
        name=name,
        data=data,
        target=target,
        attack=attack,
        defenses=defenses,
        strategies=strategies,
        attacks=attacks,
        seeds=seeds,
        threads=threads,
        trace=trace,
        description=str(raw.get("description", "")),
        source=source,
    )


def defense_settings(config: ExperimentConfig) -> list[dict[str, Any]]:
    """Every defense setting of the grid: entries with their sweeps expanded."""
    out = []
    for d in config.defenses:
        settings = [{}]
        if d["sweep"]:
            ((key, values),) = d["sweep"].items()
            settings = [{key: v} for v in values]
        for setting in settings:
            params = {**d["params"], **setting}
            label = d.get("label") or d["name"]
            if setting:
                ((k, v),) = setting.items()
                label = f"{label} ({k}={v})"
            out.append(
                {
                    "name": d["name"],
                    "params": params,
                    "outlier_exposure": bool(d.get("outlier_exposure", d["name"] == "am")),
                    "label": label,
                    "entry": d.get("label") or d["name"],
                    "swept": dict(setting),
                }
            )
    return out


def expand(config: ExperimentConfig) -> list[Cell]:
    """The grid's cells: one utility cell per defense setting, then every attack cell."""
    data = {k: config.data[k] for k in sorted(config.data)}
    target = {k: config.target[k] for k in sorted(config.target)}
    cells: list[Cell] = []
    seen: set[str] = set()

    def add(kind: str, spec: dict[str, Any], labels: dict[str, str]) -> None:
        spec = {"kind": kind, "data": data, "target": target, "threads": config.threads, **spec}
        key = cell_key(spec)
        if key not in seen:
            seen.add(key)
            cells.append(Cell(key=key, kind=kind, spec=spec, labels=labels))

    settings = defense_settings(config)
    for d in settings:
        defense = {k: d[k] for k in ("name", "params", "outlier_exposure")}
        add(
            "utility",
            {"defense": defense, "trace": config.trace},
            {"defense": d["label"], "defense_entry": d["entry"], **_swept(d)},
        )
    for d in settings:
        defense = {k: d[k] for k in ("name", "params", "outlier_exposure")}
        for s in config.strategies:
            for a in config.attacks:
                for seed in config.seeds:
                    add(
                        "attack",
                        {
                            "defense": defense,
                            "strategy": {"name": s["name"], "params": s["params"]},
                            "recipe": a["recipe"],
                            "params": {**a["shared"], **a["params"]},
                            "labels_only": bool(
                                a.get("labels_only", config.attack.get("labels_only", False))
                            ),
                            "budgets": config.attack["budgets"],
                            "side_data": config.attack["side_data"],
                            "seed": seed,
                        },
                        {
                            "defense": d["label"],
                            "defense_entry": d["entry"],
                            **_swept(d),
                            "strategy": s.get("label") or s["name"],
                            "attack": a.get("label") or a["recipe"],
                        },
                    )
    return cells


def _swept(setting: Mapping[str, Any]) -> dict[str, str]:
    if not setting["swept"]:
        return {}
    ((k, v),) = setting["swept"].items()
    return {"swept_param": k, "swept_value": json.dumps(v)}


# ---------------------------------------------------------------------------------- validation


def _keys(table: Mapping[str, Any], allowed: set[str], where: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            at = f"{prefix}.{key}" if prefix else key
            raise ConfigError(
                f"{where}: unknown key {at!r}. Allowed here: {', '.join(sorted(allowed))}."
            )


def _table(value: Any, where: str, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {key} must be a table. Got {type(value).__name__} instead.")
    return value


def _typed(value: Any, kind: type, where: str, key: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(
            f"{where}: {key} must be a {kind.__name__}. Got {value!r} ({type(value).__name__}) "
            "instead."
        )
    return value


def _int(value: Any, where: str, key: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where}: {key} must be an int >= {low}. Got {value!r} instead.")
    return value


def _int_list(value: Any, where: str, key: str, *, low: int) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty list of ints. Got {value!r}.")
    return [_int(v, where, f"{key}[{i}]", low=low) for i, v in enumerate(value)]


def _entries(
    raw: Mapping[str, Any],
    key: str,
    allowed: set[str],
    where: str,
    *,
    name_key: str,
    default: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    value = raw.get(key, default)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: [[{key}]] must list at least one entry.")
    out = []
    for i, entry in enumerate(value):
        entry = dict(_table(entry, where, f"{key}[{i}]"))
        _keys(entry, allowed, where, f"{key}[{i}]")
        if name_key not in entry:
            raise ConfigError(f"{where}: {key}[{i}].{name_key} is required.")
        _typed(entry[name_key], str, where, f"{key}[{i}].{name_key}")
        entry["params"] = dict(_table(entry.get("params", {}), where, f"{key}[{i}].params"))
        out.append(entry)
    return out


def _unknown(kind: str, name: str, registry) -> str:
    return str(UnknownNameError(kind, name, registry))


def _check_params(name: str, params: dict[str, Any], where: str, at: str) -> None:
    """Build the defense once with its first setting, so bad values fail before any work."""
    from modelsteal.defenses import build_defense

    if name == "am" and "misinformation_model" not in params:
        from torch import nn

        params = {**params, "misinformation_model": nn.Identity()}  # trained by the runner
    try:
        build_defense(name, **params)
    except (InvalidParameterError, TypeError) as exc:
        raise ConfigError(f"{where}: {at}.params: {exc}") from None
