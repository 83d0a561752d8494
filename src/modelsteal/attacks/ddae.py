"""D-DAE (Chen et al., IEEE S&P 2023) and D-DAE+ (Tang et al. 2024): a learned restorer.

A restorer MLP (C → h1 → h2 → C with BatchNorm, LeakyReLU(0.2) and a final softmax) is trained to
map perturbed vectors back to clean ones with the loss C · L1 and SGD with momentum, as in the
ModelGuard reference code (``Recover_NN``). Two options are ours: ``loss="mse"`` (C · mean squared
error) fits the conditional mean of the clean vector given the answer, the estimator partial Bayes
approximates, where L1 fits the per-class median (on the digits benchmark it did not close the
gap); and ``top1_input=True`` feeds the restorer the answer's one-hot top-1 class as well (see
:class:`Restorer`), which it needs against ModelGuard-W. The two attacks differ in their training
pairs:

- **D-DAE**: ``shadows`` small shadow models, trained on the attacker's own labelled set
  (``state.side_data``) with different seeds and bootstrap draws, are applied to the attacker's
  query inputs; the known defense, simulated offline, perturbs their outputs.
- **D-DAE+**: the partial Bayes lookup table (:mod:`modelsteal.attacks.bayes`).

Departures: the defense detector of D-DAE is left out (the attacker knows the defense, as in
Tang et al.). The shadow models are the project's small MLP/CNN (the reference uses 20 AlexNets
on ImageNet subsets) and are not topped up with Dirichlet samples. When the attacker has no
labelled set (``side_data=None``), the shadows are trained on the queried inputs labelled with the
top-1 of the returned answers — the only labels the attacker has — and ``state.memo`` says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.attacks._base import RECOVERIES, AttackState
from modelsteal.attacks.bayes import PartialBayes, simulated_defense
from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.models import TrainConfig, build_model, predict_proba, train_model

log = logging.getLogger(__name__)


def restorer_hidden(n_classes: int) -> tuple[int, int]:
    """Hidden sizes of the reference restorer: 10→(128, 64), 43→(512, 256), 100→(1024, 512),
    200 and more→(2048, 1024); in between, the next larger entry."""
    for limit, sizes in ((10, (128, 64)), (43, (512, 256)), (100, (1024, 512))):
        if n_classes <= limit:
            return sizes
    return (2048, 1024)


class Restorer(nn.Module):
    """C → h1 → h2 → C MLP with BatchNorm and LeakyReLU(0.2); ``forward`` returns probabilities.

    ``top1_input=True`` also feeds the one-hot top-1 class of each input row (2C inputs). A
    defense that keeps the argmax by a tiny margin (ModelGuard-W: 1e-4) returns rows whose top
    two entries are nearly equal; the plain restorer cannot tell which one is the top class, the
    one-hot can.
    """

    def __init__(
        self, n_classes: int, hidden: Sequence[int] | None = None, *, top1_input: bool = False
    ) -> None:
        super().__init__()
        h1, h2 = tuple(hidden) if hidden is not None else restorer_hidden(n_classes)
        self.top1_input = bool(top1_input)
        self.net = nn.Sequential(
            nn.Linear(2 * n_classes if self.top1_input else n_classes, h1),
            nn.BatchNorm1d(h1),
            nn.LeakyReLU(0.2),
            nn.Linear(h1, h2),
            nn.BatchNorm1d(h2),
            nn.LeakyReLU(0.2),
            nn.Linear(h2, n_classes),
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.top1_input:
            top1 = nn.functional.one_hot(y.argmax(dim=1), y.shape[1]).to(y.dtype)
            y = torch.cat([y, top1], dim=1)
        return torch.softmax(self.net(y), dim=1)


_LOSS_FUNCTIONS = {"l1": nn.functional.l1_loss, "mse": nn.functional.mse_loss}
LOSSES = tuple(_LOSS_FUNCTIONS)


def train_restorer(
    perturbed: np.ndarray,
    clean: np.ndarray,
    *,
    hidden: Sequence[int] | None = None,
    loss: str = "l1",
    top1_input: bool = False,
    epochs: int = 200,
    batch_size: int = 1024,
    lr: float = 1e-2,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    step_size: int = 100,
    gamma: float = 0.5,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> Restorer:
    """Fit a :class:`Restorer` mapping ``perturbed`` rows to ``clean`` rows.

    ``loss``: ``"l1"`` (C · L1, the reference's) or ``"mse"`` (C · mean squared error);
    ``top1_input``: see :class:`Restorer`. Other defaults are the reference's (SGD lr 0.01,
    momentum 0.9, weight decay 1e-4, batch 1024, 200 epochs, lr halved every 100).
    ``on_epoch(epoch, mean_loss)`` is called after each epoch.
    """
    owner = "train_restorer"
    P = np.asarray(perturbed, dtype=np.float32)
    Y = np.asarray(clean, dtype=np.float32)
    if P.ndim != 2 or P.shape != Y.shape or len(P) < 2:
        raise InputValidationError(
            f"{owner}: perturbed and clean must be (n, C) arrays of the same shape with n ≥ 2. "
            f"Got {P.shape} and {Y.shape}."
        )
    epochs = check_int(epochs, name="epochs", owner=owner, low=1)
    batch_size = check_int(batch_size, name="batch_size", owner=owner, low=2)
    check_float(lr, name="lr", owner=owner, low=0, low_open=True)
    loss_fn = _LOSS_FUNCTIONS[check_choice(loss, name="loss", owner=owner, choices=LOSSES)]
    n, c = P.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Restorer(c, hidden, top1_input=top1_input)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    P_t, Y_t = torch.from_numpy(P), torch.from_numpy(Y)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # BatchNorm needs two rows in training mode
                continue
            opt.zero_grad(set_to_none=True)
            value = c * loss_fn(model(P_t[idx]), Y_t[idx])
            value.backward()
            opt.step()
            total += float(value.detach()) * len(idx)
        sched.step()
        if on_epoch is not None:
            on_epoch(epoch, total / n)
    model.eval()
    return model


def restore(model: Restorer, returned: np.ndarray, *, batch_size: int = 8192) -> np.ndarray:
    """Apply a trained restorer to returned rows (float64 probabilities)."""
    returned = np.asarray(returned, dtype=np.float32)
    outs = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(returned), batch_size):
            outs.append(model(torch.from_numpy(returned[start : start + batch_size])).double())
    out = torch.cat(outs).numpy() if outs else np.empty((0, returned.shape[1]))
    return out / out.sum(axis=1, keepdims=True)


class _RestorerRecovery:
    """Shared part: parameters, a restorer trained in ``prepare`` and applied in ``__call__``."""

    owner = "DDAE"

    def __init__(
        self,
        defense: str,
        defense_params: dict[str, Any] | None,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        hidden: Sequence[int] | None,
        seed: int,
        loss: str = "l1",
        top1_input: bool = False,
    ) -> None:
        self.defense = defense
        self.defense_params = dict(defense_params or {})
        simulated_defense(defense, self.defense_params)  # fail early on a bad name or parameter
        self.epochs = check_int(epochs, name="epochs", owner=self.owner, low=1)
        self.batch_size = check_int(batch_size, name="batch_size", owner=self.owner, low=2)
        self.lr = check_float(lr, name="lr", owner=self.owner, low=0, low_open=True)
        self.hidden = None if hidden is None else tuple(hidden)
        self.loss = check_choice(loss, name="loss", owner=self.owner, choices=LOSSES)
        self.top1_input = bool(top1_input)
        self.seed = check_int(seed, name="seed", owner=self.owner, low=0)
        self.restorer_: Restorer | None = None

    def fit_pairs(self, perturbed: np.ndarray, clean: np.ndarray, seed: int) -> Restorer:
        self.restorer_ = train_restorer(
            perturbed,
            clean,
            hidden=self.hidden,
            loss=self.loss,
            top1_input=self.top1_input,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            step_size=max(1, self.epochs // 2),
            seed=seed,
        )
        return self.restorer_

    def __call__(self, returned: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        if self.restorer_ is None:
            raise InvalidParameterError(
                f"{self.owner}: the restorer is not trained yet. Run the recipe through "
                "extract() (which calls prepare), or call prepare(state, rng) first."
            )
        return restore(self.restorer_, returned)


class DDAE(_RestorerRecovery):
    """D-DAE: a restorer trained on shadow-model outputs perturbed by the known defense.

    Parameters: ``shadows`` (number of shadow models; the paper uses 20), ``shadow_arch`` and
    ``shadow_params`` (registered architecture, default as the substitute's), ``shadow_epochs``;
    the restorer's ``epochs``, ``batch_size``, ``lr``, ``hidden``, ``loss`` (``"l1"``, the
    reference's, or ``"mse"``) and ``top1_input`` (see :class:`Restorer`); ``seed``.
    """

    owner = "DDAE"

    def __init__(
        self,
        defense: str = "none",
        defense_params: dict[str, Any] | None = None,
        *,
        shadows: int = 5,
        shadow_arch: str = "auto",
        shadow_params: dict[str, Any] | None = None,
        shadow_epochs: int = 30,
        epochs: int = 200,
        batch_size: int = 1024,
        lr: float = 1e-2,
        hidden: Sequence[int] | None = None,
        loss: str = "l1",
        top1_input: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            defense,
            defense_params,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            hidden=hidden,
            loss=loss,
            top1_input=top1_input,
            seed=seed,
        )
        self.shadows = check_int(shadows, name="shadows", owner=self.owner, low=1)
        self.shadow_arch = shadow_arch
        self.shadow_params = dict(shadow_params or {})
        self.shadow_epochs = check_int(shadow_epochs, name="shadow_epochs", owner=self.owner, low=1)

    def training_pairs(
        self,
        side_x: np.ndarray,
        side_y: np.ndarray,
        query_x: np.ndarray,
        *,
        n_classes: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(perturbed, clean) pairs from the shadow models' outputs on ``query_x``."""
        from modelsteal.attacks.training import default_architecture

        shape = tuple(np.asarray(query_x).shape[1:])
        arch = default_architecture(shape) if self.shadow_arch == "auto" else self.shadow_arch
        sim = simulated_defense(self.defense, self.defense_params)
        clean_parts, pert_parts = [], []
        for _ in range(self.shadows):
            seed = int(rng.integers(2**31))
            draw = rng.integers(0, len(side_x), size=len(side_x))  # bootstrap: diverse shadows
            model = build_model(arch, shape, n_classes, seed=seed, **self.shadow_params)
            train_model(
                model,
                side_x[draw],
                side_y[draw],
                config=TrainConfig(epochs=self.shadow_epochs),
                seed=seed,
            )
            clean = predict_proba(model, query_x)
            clean_parts.append(clean)
            pert_parts.append(sim.perturb(clean, x=query_x if sim.needs_inputs else None))
        return np.concatenate(pert_parts), np.concatenate(clean_parts)

    def prepare(self, state: AttackState, rng: np.random.Generator) -> None:
        """Train the shadows on ``state.side_data`` and the restorer on their perturbed outputs."""
        query_x = state.inputs()
        if state.side_data is not None:
            side_x, side_y = np.asarray(state.side_data.X), np.asarray(state.side_data.y)
            state.memo["ddae_side_data"] = f"side_data ({len(side_x)} rows)"
        else:
            side_x, side_y = query_x, state.answers().argmax(axis=1)
            state.memo["ddae_side_data"] = "queried inputs, top-1 of returned answers"
            log.info("D-DAE without side_data: shadows trained on top-1 of the returned answers.")
        perturbed, clean = self.training_pairs(
            side_x, side_y, query_x, n_classes=state.n_classes, rng=rng
        )
        self.fit_pairs(perturbed, clean, seed=int(rng.integers(2**31)))


class DDAEPlus(_RestorerRecovery):
    """D-DAE+: the restorer trained on the partial Bayes lookup table (Tang et al. 2024).

    The table is built around what the attacker can know (``centre="returned"`` by default; a
    tuple of centres for a mixture, e.g. ``("returned", "substitute_top1")``),
    ``samples_per_query`` entries per queried row and centre, plus ``refine`` re-centred rounds;
    ``centre_model`` and ``trainer`` are passed on for the substitute centres. See
    :class:`~modelsteal.attacks.bayes.PartialBayes`. ``loss="mse"`` fits the table's posterior
    mean instead of the reference's per-class median; ``top1_input=True`` gives the restorer the
    answer's top-1 class (see :class:`Restorer`).
    """

    owner = "DDAEPlus"

    def __init__(
        self,
        defense: str = "none",
        defense_params: dict[str, Any] | None = None,
        *,
        centre: str | Sequence[str] = "returned",
        samples_per_query: int = 20,
        concentration: float = 8.0,
        clean: np.ndarray | None = None,
        centre_model: Any = None,
        trainer: Any = None,
        refine: int = 0,
        epochs: int = 200,
        batch_size: int = 1024,
        lr: float = 1e-2,
        hidden: Sequence[int] | None = None,
        loss: str = "l1",
        top1_input: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            defense,
            defense_params,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            hidden=hidden,
            loss=loss,
            top1_input=top1_input,
            seed=seed,
        )
        self.table_ = PartialBayes(
            defense,
            defense_params,
            centre=centre,
            samples_per_query=samples_per_query,
            concentration=concentration,
            clean=clean,
            centre_model=centre_model,
            trainer=trainer,
            refine=refine,
            seed=seed,
        )

    def fit_returned(self, returned: np.ndarray, x: np.ndarray | None = None) -> Restorer:
        """Build the table around ``returned`` (and ``x``) and train the restorer on it."""
        self.table_(returned, x)  # builds (and, with refine, re-centres) the table
        table = self.table_.table()
        return self.fit_pairs(table.perturbed, table.clean, seed=self.seed)

    def prepare(self, state: AttackState, rng: np.random.Generator) -> None:
        """Build the lookup table on the answers so far and train the restorer on it."""
        self.table_.prepare(state, rng)
        self.table_(state.answers(), state.inputs())
        table = self.table_.table()
        state.memo["ddae_plus_table_rows"] = len(table)
        self.fit_pairs(table.perturbed, table.clean, seed=int(rng.integers(2**31)))


@RECOVERIES.register("ddae")
def ddae(**params: Any) -> DDAE:
    """D-DAE (Chen et al. 2023); see :class:`DDAE`."""
    return DDAE(**params)


@RECOVERIES.register("ddae_plus")
def ddae_plus(**params: Any) -> DDAEPlus:
    """D-DAE+ (Tang et al. 2024); see :class:`DDAEPlus`."""
    return DDAEPlus(**params)
