"""Shared fixtures: tiny real targets trained in seconds on scikit-learn's digits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from sklearn.datasets import load_digits

from modelsteal.models import TrainConfig, build_model, train_model

# Property tests draw the same examples on every run, like every other seeded test; set
# HYPOTHESIS_PROFILE=explore for fresh random examples.
settings.register_profile("seeded", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "seeded"))

# The suite runs on two pytest-xdist workers: one torch thread each avoids oversubscribing the
# two cores. (No test compares results computed under different thread counts.)
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


@pytest.fixture(scope="session")
def digits_mlp(digits):
    """An MLP trained on the first 800 digits (fixed, seeded)."""
    X, y = digits
    model = build_model("mlp", (64,), 10, seed=0, hidden=(64,))
    return train_model(model, X[:800], y[:800], config=TrainConfig(epochs=15), seed=0)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path | None:
    """The real data sets folder, when the environment provides one."""
    env = os.environ.get("MODELSTEAL_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "datasets")
    for path in candidates:
        if (path / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return path
    return None


@pytest.fixture
def privacy_cli():
    """Invoke ``modelsteal privacy ...``: returns (result, output)."""
    import typer
    from typer.testing import CliRunner

    from modelsteal.privacy.cli import privacy_app

    app = typer.Typer()
    app.add_typer(privacy_app, name="privacy")
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(app, ["privacy", *map(str, args)])
        return result, result.output

    return invoke
