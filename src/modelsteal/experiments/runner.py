"""Run a grid: prepare the shared models once, run every unfinished cell, store each result.

A cell is computed by :func:`run_cell`, a pure function of the cell's spec (and the prepared
model files): given the same spec it returns the same values, whichever process runs it, because
every random choice is seeded from the spec and torch runs with the spec's thread count. The
backends only decide where cells run:

- ``local``: ``workers=1`` runs cells in this process; more start that many worker processes
  (spawned, so no state is shared);
- ``ray``: each cell is a Ray task — a local Ray instance, or a cluster at ``address`` (the run
  folder must then be on storage every node can read).

Only this process writes to the store, as each cell comes back, so a run killed at any point
loses at most the cells in flight, and ``run_grid`` on the same folder finishes exactly the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from modelsteal.errors import InvalidParameterError
from modelsteal.experiments.config import Cell, ExperimentConfig
from modelsteal.experiments.store import ResultStore

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")

CellProgress = Callable[[Cell, dict[str, Any] | None, str | None, int, int], None]
"""``progress(cell, result, error, finished, total)``, called as each cell comes back."""


@dataclass(frozen=True)
class GridSummary:
    total: int
    skipped: int
    finished: int
    failed: int
    seconds: float
    store: Path


# --------------------------------------------------------------------------------- the models


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_paths(spec: dict[str, Any], workdir: Path) -> dict[str, Path]:
    """Where the target (and, for AM, the outlier-exposed target and misinformation model) of a
    cell are stored in the run folder. A user's own model file is used where it is."""
    if "path" in spec["target"]:
        paths = {"target": Path(spec["target"]["path"])}
    else:
        paths = {
            "target": workdir / "models" / f"target-{_digest([spec['data'], spec['target']])}.pt"
        }
    if spec["defense"].get("outlier_exposure"):
        tag = _digest([spec["data"], spec["target"], "outlier_exposure"])
        paths["oe_target"] = workdir / "models" / f"oe-target-{tag}.pt"
        paths["misinformation"] = workdir / "models" / f"misinformation-{tag}.pt"
    return paths


@lru_cache(maxsize=4)
def _splits_cached(data_json: str, data_dir: str | None):
    from modelsteal.data import load_splits

    data = json.loads(data_json)
    return load_splits(
        data["name"],
        data_dir=data_dir,
        seed=data.get("split_seed", 0),
        pool_fraction=data.get("pool_fraction", 0.5),
        test_fraction=data.get("test_fraction", 0.25),
        max_train=data.get("max_train"),
        label_column=data.get("label_column", "label"),
        ood=data.get("ood"),
    )


def load_cell_splits(spec: dict[str, Any], data_dir: str | None):
    return _splits_cached(json.dumps(spec["data"], sort_keys=True), data_dir)


def _ood_halves(splits, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The OOD set cut in two seeded halves: outlier exposure trains on the first, every
    defense's OOD AUROC is measured on the second, so no image serves both."""
    order = np.random.default_rng(seed).permutation(len(splits.ood))
    half = len(order) // 2
    return splits.ood.X[order[:half]], splits.ood.X[order[half:]]


def prepare_models(
    cells: Iterable[Cell],
    workdir: Path,
    data_dir: str | None,
    log_line: Callable[[str], None] = log.info,
) -> None:
    """Train every model the cells need and is not yet in ``workdir/models`` (in this process,
    before any worker starts, so workers only read them)."""
    from modelsteal.attacks.training import default_architecture
    from modelsteal.models import ModelInfo, TrainConfig, build_model, save_model, train_model

    for cell in cells:
        spec = cell.spec
        paths = model_paths(spec, workdir)
        if "path" in spec["target"]:
            if not paths["target"].is_file():
                raise InvalidParameterError(f"target.path: no model file at {paths['target']}.")
            if "oe_target" in paths:
                raise InvalidParameterError(
                    "Adaptive Misinformation (am) needs a target the grid trains itself (with "
                    "outlier exposure): use target.arch instead of target.path, or drop am."
                )
            continue
        if all(p.is_file() for p in paths.values()):
            continue
        splits = load_cell_splits(spec, data_dir)
        t = spec["target"]
        arch = default_architecture(splits.input_shape) if t["arch"] == "auto" else t["arch"]
        config = TrainConfig(
            epochs=t["epochs"],
            batch_size=t["batch_size"],
            lr=t["lr"],
            weight_decay=t.get("weight_decay", 0.0),
        )
        shape, c, seed = splits.input_shape, splits.n_classes, t["seed"]
        info = ModelInfo(
            arch=arch,
            input_shape=tuple(shape),
            n_classes=c,
            params=dict(t.get("params", {})),
            metadata={"data": spec["data"]},
        )
        x, y = splits.target_train.X, splits.target_train.y
        _set_threads(spec.get("threads", 1))
        if not paths["target"].is_file():
            log_line(f"training the target ({arch}, {t['epochs']} epochs)")
            model = build_model(arch, shape, c, seed=seed, **info.params)
            save_model(paths["target"], train_model(model, x, y, config=config, seed=seed), info)
        if "oe_target" in paths and not paths["oe_target"].is_file():
            from modelsteal.defenses.am import (
                train_misinformation_model,
                train_with_outlier_exposure,
            )
            from modelsteal.models import predict_proba

            if splits.ood is None:
                raise InvalidParameterError(
                    "Adaptive Misinformation (am) trains its target with outlier exposure: set "
                    "data.ood to an out-of-distribution data set (e.g. 'kmnist' for mnist)."
                )
            oe_x, _ = _ood_halves(splits, seed)
            log_line("training the outlier-exposed target and the misinformation model (am)")
            oe = train_with_outlier_exposure(
                build_model(arch, shape, c, seed=seed, **info.params),
                x,
                y,
                oe_x,
                config=config,
                seed=seed,
            )
            mis = train_misinformation_model(
                build_model(arch, shape, c, seed=seed + 1, **info.params),
                x,
                y,
                oe_x,
                predict_proba(oe, oe_x).argmax(axis=1),
                config=config,
                seed=seed,
            )
            save_model(paths["misinformation"], mis, info)
            save_model(paths["oe_target"], oe, info)  # last: its presence means both are done


def _set_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------------------- one cell


def run_cell(spec: dict[str, Any], *, workdir: str, data_dir: str | None) -> dict[str, Any]:
    """Compute one cell (see :mod:`modelsteal.experiments.config` for the spec's fields)."""
    _set_threads(spec.get("threads", 1))
    splits = load_cell_splits(spec, data_dir)
    target, clean_target, defense = _defended_target(spec, Path(workdir), splits)
    if spec["kind"] == "utility":
        return _utility(spec, splits, clean_target, defense)
    return _attack(spec, splits, target, clean_target, defense)


def _defended_target(spec, workdir: Path, splits):
    from modelsteal.defenses import build_defense, defended
    from modelsteal.models import load_model
    from modelsteal.targets import TorchTarget, load_target

    paths = model_paths(spec, workdir)
    d = spec["defense"]
    params = dict(d["params"])
    if "oe_target" in paths:
        clean = TorchTarget(load_model(paths["oe_target"])[0], input_shape=splits.input_shape)
        params.setdefault("misinformation_model", load_model(paths["misinformation"])[0])
    elif "path" in spec["target"]:
        clean = load_target(paths["target"], input_shape=splits.input_shape)
    else:
        clean = TorchTarget(load_model(paths["target"])[0], input_shape=splits.input_shape)
    defense = build_defense(d["name"], **params)
    return defended(clean, defense), clean, defense


def _ood_eval(spec, splits) -> np.ndarray | None:
    if splits.ood is None:
        return None
    return _ood_halves(splits, spec["target"].get("seed", 0))[1]


def _utility(spec, splits, clean_target, defense) -> dict[str, Any]:
    from modelsteal.defenses import build_defense, evaluate_defense
    from modelsteal.metrics import l1_distances

    result = evaluate_defense(
        clean_target,
        defense,
        test_x=splits.target_test.X,
        test_y=splits.target_test.y,
        ood_x=_ood_eval(spec, splits),
    )
    result.pop("params", None)
    if callable(getattr(defense, "centroid_counts", None)):
        # Centroid growth along a stream of natural queries (a fresh defense, same settings).
        trace = spec.get("trace") or {}
        fresh = build_defense(spec["defense"]["name"], **_model_params(spec, defense))
        x = splits.attacker_pool.X[: trace.get("rows", 10_000)]
        step = trace.get("step", 500)
        growth = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            clean = clean_target.query(chunk)
            returned = fresh.perturb(clean, x=chunk)
            growth.append(
                {
                    "queries": start + len(chunk),
                    "centroids": int(sum(fresh.centroid_counts().values())),
                    "mean_l1": float(l1_distances(clean, returned).mean()),
                }
            )
        result["centroid_growth"] = growth
    return result


def _model_params(spec, defense) -> dict[str, Any]:
    params = dict(spec["defense"]["params"])
    if spec["defense"].get("outlier_exposure"):
        params["misinformation_model"] = defense.misinformation_model
    return params


def _attack(spec, splits, target, clean_target, defense) -> dict[str, Any]:
    import inspect

    from modelsteal.attacks import RECIPES, extract
    from modelsteal.data import ArraySet
    from modelsteal.metrics import l1_distances, recovery_distance
    from modelsteal.targets import label_only

    seed = int(spec["seed"])
    builder = RECIPES.get(spec["recipe"])
    accepted = inspect.signature(builder).parameters
    params = dict(spec["params"])
    if "defense" in accepted:  # adaptive attacks know the defense and its settings
        params.setdefault("defense", spec["defense"]["name"])
        params.setdefault("defense_params", _model_params(spec, defense))
    if "strategy" in accepted:
        params.setdefault("strategy", spec["strategy"]["name"])
        params.setdefault("strategy_params", spec["strategy"]["params"])
    recipe = builder(**params)
    pool = splits.attacker_pool
    side = None
    if spec["side_data"]:
        order = np.random.default_rng(seed).permutation(len(pool))
        own, rest = order[: spec["side_data"]], np.sort(order[spec["side_data"] :])
        side = ArraySet(pool.X[own], pool.y[own])
        pool = ArraySet(pool.X[rest], pool.y[rest])
    test = splits.target_test
    started = time.perf_counter()
    result = extract(
        label_only(target) if spec["labels_only"] else target,
        recipe,
        pool=pool.X,
        budget=spec["budgets"][-1],
        schedule=spec["budgets"],
        seed=seed,
        eval_x=test.X,
        eval_y=test.y,
        eval_target=clean_target.query(test.X),
        domain=splits.domain,
        side_data=side,
    )
    seconds = time.perf_counter() - started
    clean = clean_target.query(result.queried_x)
    out: dict[str, Any] = {
        "history": result.history,
        "queries": result.queries,
        "accuracy": result.history[-1].get("accuracy"),
        "fidelity": result.history[-1].get("fidelity"),
        "attack_seconds": seconds,
        "stopped": str(result.info.get("stopped", "")),
    }
    if result.responses.shape == clean.shape:
        out["queried_max_l1"] = float(l1_distances(clean, result.responses).max())
        out["queried_mean_l1"] = float(l1_distances(clean, result.responses).mean())
    if result.recovered is not None and np.shape(result.recovered) == clean.shape:
        out["recovery_l2"] = recovery_distance(np.asarray(result.recovered), clean, ord=2)
    if callable(getattr(defense, "centroid_counts", None)):
        out["centroids"] = int(sum(defense.centroid_counts().values()))
    for key in ("mqpi_changed",):
        if key in result.info:
            out[key] = int(result.info[key])
    rounds = result.info.get("activethief")
    if isinstance(rounds, dict):  # per round: queries at its start, its batch's mean entropy
        out["activethief"] = {
            "round_queries": [int(q) for q in rounds.get("queries", [])],
            "batch_entropy": [float(h) for h in rounds.get("batch_entropy", [])],
            "stop_at": rounds.get("stop_at"),
        }
    return out


# ---------------------------------------------------------------------------------- the grid


def _run_cell_logged(spec, workdir, data_dir):
    started = time.perf_counter()
    try:
        return (
            run_cell(spec, workdir=workdir, data_dir=data_dir),
            None,
            time.perf_counter() - started,
        )
    except Exception as exc:  # a failed cell is recorded with its reason; the grid goes on
        tb = traceback.format_exc(limit=6)
        return None, f"{type(exc).__name__}: {exc}\n{tb}", time.perf_counter() - started


def run_grid(
    config: ExperimentConfig,
    out: str | Path,
    *,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    data_dir: str | None = None,
    progress: CellProgress | None = None,
    log_line: Callable[[str], None] = log.info,
    only: Mapping[str, str] | None = None,
) -> GridSummary:
    """Run every cell of ``config`` not yet finished in the store at ``out/results.sqlite``.

    ``only`` restricts the run to the cells whose labels match, e.g. ``{"strategy":
    "KnockoffNets"}`` (cells without that label, such as utility cells, are kept); the rest can
    be run later into the same folder.
    """
    if backend not in BACKENDS:
        raise InvalidParameterError(
            f"The 'backend' parameter of run_grid must be one of {', '.join(BACKENDS)}. "
            f"Got {backend!r} instead."
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidParameterError(
            f"The 'workers' parameter of run_grid must be an int >= 1. Got {workers!r} instead."
        )
    started = time.perf_counter()
    workdir = Path(out)
    store = ResultStore(workdir / "results.sqlite")
    text = Path(config.source).read_text() if Path(config.source).is_file() else ""
    store.start_run(text, config.source)
    (workdir / "config.toml").write_text(text) if text else None
    cells = config.cells()
    done = store.done_keys()
    todo = [c for c in cells if c.key not in done]
    if only:
        known = {k for c in cells for k in c.labels}
        for key in only:
            if key not in known:
                raise InvalidParameterError(
                    f"--only {key}=…: cells have no label {key!r}. "
                    f"Labels: {', '.join(sorted(known))}."
                )
        todo = [c for c in todo if all(c.labels.get(k, v) == v for k, v in only.items())]
    finished_before = sum(c.key in done for c in cells)
    left_out = len(cells) - finished_before - len(todo)
    log_line(
        f"{len(cells)} cells, {finished_before} already done, {len(todo)} to run"
        + (f", {left_out} left for later (--only)" if left_out else "")
    )
    prepare_models(todo, workdir, data_dir, log_line)
    finished = failed = 0

    def record(cell: Cell, result, error, seconds) -> None:
        nonlocal finished, failed
        if error is None:
            store.put(cell, result, seconds=seconds)
            finished += 1
        else:
            store.put_failure(cell, error, seconds=seconds)
            failed += 1
            log.warning("cell %s failed: %s", cell.key, error.splitlines()[0])
        if progress:
            progress(cell, result, error, finished + failed, len(todo))

    args = (str(workdir), data_dir)
    if backend == "ray":
        _run_ray(todo, args, workers, address, record)
    elif workers == 1:
        for cell in todo:
            record(cell, *_run_cell_logged(cell.spec, *args))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            pending = {pool.submit(_run_cell_logged, c.spec, *args): c for c in todo}
            while pending:
                ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in ready:
                    record(pending.pop(future), *future.result())
    return GridSummary(
        total=len(cells),
        skipped=finished_before,
        finished=finished,
        failed=failed,
        seconds=time.perf_counter() - started,
        store=store.path,
    )


def _run_ray(todo: list[Cell], args, workers: int, address: str | None, record) -> None:
    try:
        import ray
    except ImportError:
        raise InvalidParameterError(
            "The ray backend needs Ray: pip install 'modelsteal[ray]'."
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_run_cell_logged)
        pending = {task.remote(c.spec, *args): c for c in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                record(pending.pop(ref), *ray.get(ref))
    finally:
        if started_here:
            ray.shutdown()
