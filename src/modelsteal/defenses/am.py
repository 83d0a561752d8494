"""Adaptive Misinformation (Kariyappa & Qureshi, CVPR 2020, arXiv 1911.07100).

Queries the defended model is unsure about — out-of-distribution inputs, which is what most
extraction attacks send — are answered with a mix of the clean answer and the output of a
*misinformation model* trained to put little mass on the correct class:

    α = sigmoid(ν (τ − max_j y_j))        (α = τ when ``adaptive=False``)
    ŷ = (1 − α) y + α softmax(f_mis(x))

The defended model should be trained with Outlier Exposure (:func:`train_with_outlier_exposure`)
so that its maximum softmax probability separates in- from out-of-distribution inputs; the
misinformation model is trained with :func:`train_misinformation_model`.

Reference code: ``sanjaykariyappa/adaptive_misinformation`` (``admis/utils/defense.py``,
``admis/utils/model.py``) and ModelGuard's ``defenses/victim/am.py``. Departures:

- ``tau`` defaults to 0.99, ModelGuard's constructor default (the original class has no default;
  its README uses τ = 0.99 on MNIST, ModelGuard's scripts 0.25);
- ``nu`` defaults to 1000 as in ModelGuard; the original code uses 10000 (a harder switch);
- the original applies a softmax temperature to the defended model; here ``y`` comes in as
  probabilities from any target;
- the misinformation model is trained here after the defended model, on its final argmax for the
  OOD inputs; the original trains both jointly and labels OOD inputs with the defended model's
  argmax at the current step;
- the reference's misinformation loss passes log(1 − p + 1e-7) to ``nn.CrossEntropyLoss``, which
  applies another log-softmax: since Σ_j (1 − p_j) = C − 1 this only adds a constant, so we
  minimise −log(1 − p_y + 1e-7) directly (computed from logits without cancellation).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from modelsteal._checks import check_float, check_int
from modelsteal.defenses._base import DEFENSES, Defense
from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.models import TrainConfig, make_optimizer, soft_cross_entropy

_RCE_EPS = 1e-7  # the reference's guard in −log(1 − p_y + 1e-7)


@DEFENSES.register("am")
class AdaptiveMisinformation(Defense):
    """Adaptive Misinformation: blend in a misinformation model's answer when confidence is low.

    Parameters
    ----------
    misinformation_model:
        An ``nn.Module`` returning logits for the queried inputs (required; see
        :func:`train_misinformation_model`). Put in eval mode, never trained here.
    tau:
        The confidence threshold ("defense level") in [0, 1]: rows whose top probability is below
        it are answered mostly by the misinformation model.
    nu:
        Steepness of the switch, > 0. α = sigmoid(ν (τ − max y)).
    adaptive:
        False mixes with the constant α = τ for every row (the reference's ``use_adaptive``).
    batch_size:
        Rows per forward pass of the misinformation model.
    """

    name = "am"
    needs_inputs = True
    preserves_argmax = False

    def __init__(
        self,
        *,
        misinformation_model: nn.Module | None = None,
        tau: float = 0.99,
        nu: float = 1000.0,
        adaptive: bool = True,
        batch_size: int = 1024,
    ) -> None:
        if not isinstance(misinformation_model, nn.Module):
            raise InvalidParameterError(
                "The 'misinformation_model' parameter of AdaptiveMisinformation must be a "
                "torch.nn.Module returning logits (train one with train_misinformation_model). "
                f"Got {type(misinformation_model).__name__} instead."
            )
        self.misinformation_model = misinformation_model
        self.tau = check_float(tau, name="tau", owner="AdaptiveMisinformation", low=0.0, high=1.0)
        self.nu = check_float(nu, name="nu", owner="AdaptiveMisinformation", low=0.0, low_open=True)
        if not isinstance(adaptive, bool | np.bool_):
            raise InvalidParameterError(
                "The 'adaptive' parameter of AdaptiveMisinformation must be a bool. "
                f"Got {adaptive!r} instead."
            )
        self.adaptive = bool(adaptive)
        self.batch_size = check_int(
            batch_size, name="batch_size", owner="AdaptiveMisinformation", low=1
        )

    def alpha(self, y: np.ndarray) -> np.ndarray:
        """The mixing weight of each row: sigmoid(ν (τ − max_j y_j)), or τ if not adaptive."""
        y = np.asarray(y, dtype=np.float64)
        if not self.adaptive:
            return np.full(len(y), self.tau)
        return expit(self.nu * (self.tau - y.max(axis=1)))  # stable for any argument

    def misinformation(self, x: np.ndarray) -> np.ndarray:
        """softmax(f_mis(x)) as float64 rows."""
        return _probabilities(self.misinformation_model, x, batch_size=self.batch_size)

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        mis = self.misinformation(np.asarray(x))
        if mis.shape != y.shape:
            raise InputValidationError(
                f"AdaptiveMisinformation: the misinformation model returned shape {mis.shape} "
                f"for answers of shape {y.shape}; it must have one logit per class."
            )
        a = self.alpha(y)[:, None]
        return (1.0 - a) * y + a * mis


def _probabilities(model: nn.Module, x: np.ndarray, *, batch_size: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or arr.ndim < 2:
        raise InputValidationError(
            "AdaptiveMisinformation.perturb: x must be a numeric batch of shape (n, ...). "
            f"Got an array of dtype {arr.dtype} and shape {arr.shape} instead."
        )
    ref = next(model.parameters(), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    model.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, len(arr), batch_size):
            chunk = torch.as_tensor(np.ascontiguousarray(arr[s : s + batch_size]), dtype=dtype)
            logits = model(chunk.to(device)).to("cpu", torch.float64)
            outs.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(outs, axis=0)


# ---- training the two models ------------------------------------------------------------------


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of CE(softmax(z), uniform) = −(mean_j z_j − logsumexp z), the OE term."""
    return -(logits.mean(dim=1) - torch.logsumexp(logits, dim=1)).mean()


def reverse_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over rows of −log(1 − softmax(z)_y + 1e-7): low when little mass is on class y.

    1 − p_y is computed as exp(logsumexp_{j≠y} z_j − logsumexp z), which stays accurate as p_y
    approaches 1.
    """
    rows = torch.arange(len(labels), device=logits.device)
    others = logits.clone()
    others[rows, labels] = -torch.inf
    log_rest = torch.logsumexp(others, dim=1) - torch.logsumexp(logits, dim=1)  # log(1 − p_y)
    eps = torch.full_like(log_rest, float(np.log(_RCE_EPS)))
    return -torch.logaddexp(log_rest, eps).mean()


def train_with_outlier_exposure(
    model: nn.Module,
    X_in: np.ndarray,
    y_in: np.ndarray,
    X_ood: np.ndarray,
    *,
    config: TrainConfig = TrainConfig(),
    lambda_oe: float = 1.0,
    seed: int,
) -> nn.Module:
    """Train ``model`` in place with Outlier Exposure (Hendrycks et al. 2019) and return it.

    Each step takes a batch of ``X_in`` with labels ``y_in`` ((n,) ints or (n, C) probability
    rows) and an equally sized batch of ``X_ood`` (cycled), runs them through the model together
    and minimises CE(in) + λ · CE(f(x_ood), uniform). Seeded like ``train_model``.
    """
    lambda_oe = check_float(
        lambda_oe, name="lambda_oe", owner="train_with_outlier_exposure", low=0.0
    )

    def loss(out_in: torch.Tensor, out_ood: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(out_in, targets) + lambda_oe * uniform_cross_entropy(out_ood)

    n_classes = _n_classes(model, X_in)
    targets = _soft_targets(y_in, n_classes, "y_in", len(X_in))
    return _joint_training(model, X_in, targets, X_ood, None, loss, config, seed)


def train_misinformation_model(
    model: nn.Module,
    X_in: np.ndarray,
    y_in: np.ndarray,
    X_ood: np.ndarray,
    target_labels_ood: np.ndarray,
    *,
    config: TrainConfig = TrainConfig(),
    seed: int,
) -> nn.Module:
    """Train the misinformation model ``model`` in place and return it.

    It minimises the reverse cross-entropy −log(1 − softmax(f̂(x))_y + 1e-7) on in-distribution
    inputs with their true labels ``y_in`` and on OOD inputs labelled with the defended target's
    answer ``target_labels_ood`` ((n,) ints, or (n, C) probability rows whose argmax is taken), so
    it learns to put little mass on the class the target would give. Batches of ``X_in`` and of
    ``X_ood`` (cycled) are taken together, as in the reference. Seeded like ``train_model``.
    """
    n_classes = _n_classes(model, X_in)
    labels_in = _hard_labels(y_in, n_classes, "y_in", len(X_in))
    labels_ood = _hard_labels(target_labels_ood, n_classes, "target_labels_ood", len(X_ood))

    def loss(out_in: torch.Tensor, out_ood: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return reverse_cross_entropy(torch.cat([out_in, out_ood]), labels)

    return _joint_training(model, X_in, labels_in, X_ood, labels_ood, loss, config, seed)


def _n_classes(model: nn.Module, X: np.ndarray) -> int:
    with torch.no_grad():
        model.eval()
        return int(model(torch.as_tensor(np.asarray(X[:1], dtype=np.float32))).shape[1])


def _soft_targets(y: np.ndarray, n_classes: int, name: str, n: int) -> torch.Tensor:
    y = np.asarray(y)
    if y.ndim == 1:
        out = np.zeros((len(y), n_classes), dtype=np.float32)
        out[np.arange(len(y)), y.astype(np.int64)] = 1.0
    else:
        out = np.ascontiguousarray(y, dtype=np.float32)
    _check_rows(len(out), n, name)
    return torch.from_numpy(out)


def _hard_labels(y: np.ndarray, n_classes: int, name: str, n: int) -> torch.Tensor:
    y = np.asarray(y)
    labels = y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64)
    _check_rows(len(labels), n, name)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise InputValidationError(
            f"{name}: labels must be in [0, {n_classes - 1}] for a model with {n_classes} "
            f"outputs. Got labels in [{labels.min()}, {labels.max()}] instead."
        )
    return torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))


def _check_rows(got: int, expected: int, name: str) -> None:
    if got != expected:
        raise InputValidationError(f"{name} has {got} rows but the inputs have {expected}.")


Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _joint_training(
    model: nn.Module,
    X_in: np.ndarray,
    targets_in: torch.Tensor,
    X_ood: np.ndarray,
    targets_ood: torch.Tensor | None,
    loss_fn: Loss,
    config: TrainConfig,
    seed: int,
) -> nn.Module:
    """Minimise ``loss_fn(out_in, out_ood, targets)`` over paired in/OOD batches, seeded."""
    seed = check_int(seed, name="seed", owner="training", low=0)
    x_in = torch.from_numpy(np.ascontiguousarray(X_in, dtype=np.float32))
    x_ood = torch.from_numpy(np.ascontiguousarray(X_ood, dtype=np.float32))
    if len(x_in) == 0 or len(x_ood) == 0:
        raise InputValidationError("Training needs at least one in-distribution and one OOD row.")
    if x_in.shape[1:] != x_ood.shape[1:]:
        raise InputValidationError(
            f"X_in rows have shape {tuple(x_in.shape[1:])} but X_ood rows have shape "
            f"{tuple(x_ood.shape[1:])}; both go through the same model."
        )
    opt = make_optimizer(model, config)
    gen = torch.Generator().manual_seed(seed)
    bs = config.batch_size
    ood_order = torch.randperm(len(x_ood), generator=gen)
    ood_pos = 0
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks
        for _ in range(config.epochs):
            order = torch.randperm(len(x_in), generator=gen)
            for start in range(0, len(x_in), bs):
                idx = order[start : start + bs]
                take = []
                while len(take) < len(idx):  # cycle through the OOD rows, reshuffled each pass
                    if ood_pos == len(x_ood):
                        ood_order, ood_pos = torch.randperm(len(x_ood), generator=gen), 0
                    step = min(len(idx) - len(take), len(x_ood) - ood_pos)
                    take.extend(ood_order[ood_pos : ood_pos + step].tolist())
                    ood_pos += step
                jdx = torch.tensor(take, dtype=torch.long)
                out = model(torch.cat([x_in[idx], x_ood[jdx]]))
                out_in, out_ood = out[: len(idx)], out[len(idx) :]
                if targets_ood is None:
                    targets = targets_in[idx]
                else:
                    targets = torch.cat([targets_in[idx], targets_ood[jdx]])
                opt.zero_grad(set_to_none=True)
                loss_fn(out_in, out_ood, targets).backward()
                opt.step()
    model.eval()
    return model
