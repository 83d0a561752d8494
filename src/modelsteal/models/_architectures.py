"""Small architectures for targets and substitutes, registered by name.

Each entry is a factory ``build(input_shape, n_classes, **params) -> nn.Module``; the module
returns logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from modelsteal._checks import check_float, check_int, check_shape
from modelsteal._registry import Registry
from modelsteal.errors import InvalidParameterError

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def _hidden(hidden: Any, owner: str) -> tuple[int, ...]:
    if isinstance(hidden, int):
        hidden = (hidden,)
    try:
        sizes = tuple(int(h) for h in hidden)
    except TypeError:
        sizes = ()
    if any(h <= 0 for h in sizes):
        sizes = ()
    if not sizes and hidden != ():
        raise InvalidParameterError(
            f"The 'hidden' parameter of {owner} must be a sequence of positive ints. "
            f"Got {hidden!r} instead."
        )
    return sizes


@MODELS.register("logreg")
def logistic_regression(input_shape: Sequence[int], n_classes: int) -> nn.Module:
    """Multinomial logistic regression: flatten, one linear layer."""
    shape = check_shape(input_shape, name="input_shape", owner="logreg")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), n_classes))


@MODELS.register("mlp")
def mlp(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    hidden: Sequence[int] = (256, 128),
    dropout: float = 0.0,
) -> nn.Module:
    """Fully connected ReLU network on the flattened input."""
    shape = check_shape(input_shape, name="input_shape", owner="mlp")
    sizes = _hidden(hidden, "mlp")
    dropout = check_float(dropout, name="dropout", owner="mlp", low=0.0, high=1.0, high_open=True)
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(shape)
    for h in sizes:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


@MODELS.register("cnn")
def small_cnn(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    channels: Sequence[int] = (32, 64),
    hidden: int = 128,
    dropout: float = 0.25,
) -> nn.Module:
    """Two conv–ReLU–maxpool blocks and a dense head; for (C, H, W) images such as MNIST."""
    shape = check_shape(input_shape, name="input_shape", owner="cnn")
    if len(shape) != 3:
        raise InvalidParameterError(
            "The 'input_shape' parameter of cnn must be (channels, height, width). "
            f"Got {shape} instead; use 'mlp' for flat inputs."
        )
    chans = _hidden(channels, "cnn")
    hidden = check_int(hidden, name="hidden", owner="cnn", low=1)
    dropout = check_float(dropout, name="dropout", owner="cnn", low=0.0, high=1.0, high_open=True)
    layers: list[nn.Module] = []
    c_in, h, w = shape
    for c_out in chans:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c_in, h, w = c_out, h // 2, w // 2
        if h == 0 or w == 0:
            raise InvalidParameterError(
                f"cnn: the input {shape} is too small for {len(chans)} pooling blocks; "
                "pass fewer channels."
            )
    layers += [nn.Flatten(), nn.Linear(c_in * h * w, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, n_classes))
    return nn.Sequential(*layers)


def build_model(
    name: str, input_shape: Sequence[int], n_classes: int, *, seed: int, **params: Any
) -> nn.Module:
    """Build a registered architecture with weights initialised from ``seed``.

    The global torch generator is left as it was: initialisation runs under a forked RNG state.
    """
    factory = MODELS.get(name)
    n_classes = check_int(n_classes, name="n_classes", owner=name, low=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return factory(tuple(input_shape), n_classes, **params)
        except TypeError as exc:
            raise InvalidParameterError(f"Model {name!r}: {exc}") from None
