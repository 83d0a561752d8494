"""Small architectures, a seeded training loop and model bundles."""

from modelsteal.models._architectures import MODELS, build_model
from modelsteal.models._io import ModelInfo, load_model, save_model
from modelsteal.models._training import TrainConfig, predict_proba, soft_cross_entropy, train_model

__all__ = [
    "MODELS",
    "ModelInfo",
    "TrainConfig",
    "build_model",
    "load_model",
    "predict_proba",
    "save_model",
    "soft_cross_entropy",
    "train_model",
]
