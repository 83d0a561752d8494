"""Experiments: declarative grids (TOML), a resumable result store, runners and reports.

config = load_config("configs/modelguard_mnist.toml")
run_grid(config, "results/modelguard_mnist", workers=2)
write_report("results/modelguard_mnist")
"""

from modelsteal.experiments.config import (
    Cell,
    ConfigError,
    ExperimentConfig,
    expand,
    load_config,
    parse_config,
)
from modelsteal.experiments.report import write_report
from modelsteal.experiments.runner import BACKENDS, GridSummary, run_cell, run_grid
from modelsteal.experiments.store import ResultStore

__all__ = [
    "BACKENDS",
    "Cell",
    "ConfigError",
    "ExperimentConfig",
    "GridSummary",
    "ResultStore",
    "expand",
    "load_config",
    "parse_config",
    "run_cell",
    "run_grid",
    "write_report",
]
