"""Small architectures, a seeded training loop and model bundles."""

from modelsteal.models._architectures import MODELS, build_model
from modelsteal.models._io import ModelInfo, load_model, save_model
from modelsteal.models._training import (
    DEVICE_VARIABLE,
    TrainConfig,
    compute_device,
    make_optimizer,
    on_compute_device,
    predict_proba,
    soft_cross_entropy,
    train_model,
)

__all__ = [
    "DEVICE_VARIABLE",
    "MODELS",
    "ModelInfo",
    "TrainConfig",
    "build_model",
    "compute_device",
    "load_model",
    "make_optimizer",
    "on_compute_device",
    "predict_proba",
    "save_model",
    "soft_cross_entropy",
    "train_model",
]
