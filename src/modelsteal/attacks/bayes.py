"""Partial Bayes attack (Tang et al. 2024, §3.4, Eq. 12–13 and 21; Appendix B.1).

The attacker knows the defense ``p`` (Kerckhoffs) and can run it offline. It builds a lookup table
of (clean ``y``, perturbed ``p(y)``) pairs, with clean candidates drawn from Dirichlet
neighbourhoods ``Dir(s · m)`` (``s = concentration · C``) around centres ``m`` it can know, and
recovers each returned vector ŷ as the mean of the clean entries whose perturbed entry lies within
``τ = max(tolerance, min distance)`` of ŷ — the posterior mean E[y | ŷ] estimated on the table.

Centres (``centre=``):

- ``"returned"`` (default): the returned vectors themselves;
- ``"substitute"``: the predictions, on the queried inputs, of a substitute trained naively on the
  returned vectors (trained in :meth:`PartialBayes.prepare`, or given as ``centre_model``);
- ``"substitute_top1"``: the same, but the substitute is trained on the top-1 class of each
  returned vector (one-hot targets). For a defense that keeps the argmax this label is exact, and
  the substitute's confidence is its own, not the flattened confidence of the answers;
- ``"oracle_clean"``: the target's clean outputs, passed explicitly as ``clean=``. **An upper
  bound only**: the attacker cannot have them. This is what the reference code does
  (``Table_Recover`` samples around ``blackbox(x, return_origin=True)``).

A tuple of names, e.g. ``centre=("returned", "substitute_top1")``, draws ``samples_per_query``
entries around each of them: the prior is the equal mixture of the neighbourhoods, and the matching
weighs each part by how well it explains the answer. This matters for defenses that move the
answer far from the clean row (ModelGuard-W: ℓ1 = ε, with mass sent to the least likely class):
the neighbourhood of the answer then holds almost no clean row whose perturbation lands near it,
while the neighbourhood of a top-1 substitute does.

Matching is vectorised: the table is split by clean top-1 class when the defense preserves the
argmax, identical perturbed entries are merged (a quantizer maps many clean rows to one answer),
and each class gets a :class:`scipy.spatial.cKDTree` in the chosen ℓp norm. One nearest-neighbour
query per returned row gives the minimum distance, one ball query with the per-row radius τ the
matches, and segment sums the means. See ``benchmarks/adaptive_recovery.py`` for timings.

Stateful defenses (ModelGuard-S) are simulated on a fresh instance with a store in memory: the
attacker never touches the target's store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.attacks._base import RECOVERIES, AttackState
from modelsteal.defenses import Defense, build_defense
from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.targets import one_hot

log = logging.getLogger(__name__)

CENTRES = ("returned", "substitute", "substitute_top1", "oracle_clean")
SUBSTITUTE_CENTRES = ("substitute", "substitute_top1")
_MIN_ALPHA = 1e-3  # Dirichlet parameters must be > 0; exact zeros in a centre get this much


def simulated_defense(defense: str, defense_params: dict[str, Any] | None = None) -> Defense:
    """The attacker's own copy of a known defense, built from the registry.

    A stateful defense gets a fresh store in memory: a ``store`` in ``defense_params`` is ignored,
    so that the simulation can never read or write the target's store.
    """
    params = dict(defense_params or {})
    if not isinstance(defense, str):
        raise InvalidParameterError(
            "The attacker simulates the defense from its registry name (e.g. 'reverse_sigmoid') "
            f"and parameters. Got {type(defense).__name__} instead of a name."
        )
    sim = build_defense(defense, **params)
    if sim.stateful and params.pop("store", None) is not None:
        sim = build_defense(defense, **params)  # a fresh in-memory store, never the target's
    return sim


def _norm_value(norm: Any, owner: str) -> float:
    if norm in (1, 2):
        return float(norm)
    if norm in ("inf", np.inf):
        return np.inf
    raise InvalidParameterError(
        f"The 'norm' parameter of {owner} must be 1, 2 or 'inf'. Got {norm!r} instead."
    )


def dirichlet_neighbours(
    centres: np.ndarray, k: int, *, concentration: float, rng: np.random.Generator
) -> np.ndarray:
    """``k`` draws from ``Dir(concentration · C · m)`` for every centre row ``m``: (n·k, C).

    Rows are grouped by centre (the ``k`` draws of centre 0 first).
    """
    centres = np.asarray(centres, dtype=np.float64)
    c = centres.shape[1]
    alpha = np.maximum(concentration * c * centres, _MIN_ALPHA)
    # Gamma draws normalised: the same law as rng.dirichlet, but vectorised over all centres.
    g = rng.standard_gamma(np.repeat(alpha, k, axis=0))
    g = np.maximum(g, 1e-300)
    return g / g.sum(axis=1, keepdims=True)


@dataclass
class LookupTable:
    """(clean, perturbed) pairs the attacker generated offline with the known defense."""

    clean: np.ndarray
    perturbed: np.ndarray

    def __len__(self) -> int:
        return len(self.clean)


def build_table(
    centres: np.ndarray,
    defense: Defense,
    *,
    x: np.ndarray | None = None,
    samples_per_centre: int = 20,
    concentration: float = 8.0,
    rng: np.random.Generator,
    batch_size: int = 65536,
) -> LookupTable:
    """Sample clean candidates around ``centres`` (Eq. 21) and perturb them with ``defense``.

    ``x`` (one input per centre) is passed to input-dependent defenses (MAD, AM), each candidate
    with the input of its centre. Entries farther from their clean row than the defense's ℓ1
    bound (possible only through float dust) are dropped, as in the reference code.
    """
    k = check_int(samples_per_centre, name="samples_per_centre", owner="build_table", low=1)
    concentration = check_float(
        concentration, name="concentration", owner="build_table", low=0, low_open=True
    )
    clean = dirichlet_neighbours(centres, k, concentration=concentration, rng=rng)
    xs = None
    if defense.needs_inputs:
        if x is None or len(x) != len(centres):
            raise InvalidParameterError(
                f"{type(defense).__name__} needs the queried inputs: pass x with one row per "
                "centre."
            )
        xs = np.repeat(np.asarray(x), k, axis=0)
    parts = []
    for start in range(0, len(clean), batch_size):
        stop = start + batch_size
        parts.append(defense.perturb(clean[start:stop], x=None if xs is None else xs[start:stop]))
    perturbed = np.concatenate(parts) if parts else np.empty_like(clean)
    bound = defense.max_l1
    if bound is not None:
        keep = np.abs(clean - perturbed).sum(axis=1) <= bound + 1e-9
        clean, perturbed = clean[keep], perturbed[keep]
    return LookupTable(clean=clean, perturbed=perturbed)


def match_table(
    table: LookupTable,
    returned: np.ndarray,
    *,
    tolerance: float = 0.01,
    norm: float | int | str = 1,
    same_top1: bool = True,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Recover each returned row as the mean clean entry within τ = max(tolerance, d_min).

    ``same_top1`` restricts the candidates of a row to table entries whose clean top-1 is the
    row's top-1 (for defenses that preserve the argmax). Rows with no candidate at all are
    returned unchanged. Returns ``(recovered, n_matches)``.
    """
    tolerance = check_float(tolerance, name="tolerance", owner="match_table", low=0)
    p = _norm_value(norm, "match_table")
    returned = np.asarray(returned, dtype=np.float64)
    if returned.ndim != 2 or returned.shape[1] != table.clean.shape[1]:
        raise InputValidationError(
            f"match_table: returned must be (n, {table.clean.shape[1]}). Got {returned.shape}."
        )
    out = returned.copy()
    counts = np.zeros(len(returned), dtype=np.int64)
    if len(table) == 0 or len(returned) == 0:
        return out, counts
    if same_top1:
        row_key, entry_key = returned.argmax(axis=1), table.clean.argmax(axis=1)
    else:
        row_key = np.zeros(len(returned), dtype=np.int64)
        entry_key = np.zeros(len(table), dtype=np.int64)
    for key in np.unique(row_key):
        rows = np.flatnonzero(row_key == key)
        entries = np.flatnonzero(entry_key == key)
        if len(entries) == 0:
            continue
        # Merge identical perturbed entries: keep their clean sum and count.
        uniq, inverse = np.unique(table.perturbed[entries], axis=0, return_inverse=True)
        inverse = inverse.ravel()
        sums = np.zeros_like(uniq)
        np.add.at(sums, inverse, table.clean[entries])
        mult = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
        tree = cKDTree(uniq)
        q = returned[rows]
        d_min, _ = tree.query(q, k=1, p=p, workers=workers)
        tau = np.maximum(tolerance, d_min) * (1 + 1e-9) + 1e-12
        balls = tree.query_ball_point(q, tau, p=p, workers=workers)
        lengths = np.fromiter((len(b) for b in balls), dtype=np.int64, count=len(balls))
        flat = np.fromiter((i for b in balls for i in b), dtype=np.int64, count=int(lengths.sum()))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        total = np.add.reduceat(sums[flat], starts, axis=0)
        weight = np.add.reduceat(mult[flat], starts)
        out[rows] = total / weight[:, None]
        counts[rows] = np.add.reduceat(mult[flat], starts).astype(np.int64)
    return out, counts


def fit_centre_model(
    centre: str,
    x: np.ndarray,
    answers: np.ndarray,
    *,
    trainer: Any = None,
    input_shape: Sequence[int],
    seed: int,
) -> Any:
    """The model a substitute centre reads its centres from, trained on the queried inputs ``x``:
    on the answers themselves (``"substitute"``) or on their one-hot top-1 (``"substitute_top1"``).

    ``trainer`` defaults to a plain :class:`~modelsteal.attacks.training.SubstituteTrainer`.
    """
    from modelsteal.attacks.training import SubstituteTrainer

    check_choice(centre, name="centre", owner="fit_centre_model", choices=SUBSTITUTE_CENTRES)
    answers = np.asarray(answers, dtype=np.float64)
    n_classes = answers.shape[1]
    targets = answers if centre == "substitute" else one_hot(answers.argmax(axis=1), n_classes)
    trainer = trainer if trainer is not None else SubstituteTrainer()
    return trainer.fit(x, targets, input_shape=input_shape, n_classes=n_classes, seed=seed)


class PartialBayes:
    """Partial Bayes recovery: a Dirichlet lookup table and tolerance-ball matching.

    Parameters
    ----------
    defense, defense_params:
        The defense the target runs, by registry name and parameters (the attacker knows it).
    centre:
        Where the Dirichlet neighbourhoods are centred: ``"returned"`` (default),
        ``"substitute"``, ``"substitute_top1"`` or ``"oracle_clean"`` (an upper bound; needs
        ``clean``), or a tuple of these for a mixture. See the module docstring.
    samples_per_query:
        Table entries drawn around each queried row (the paper's K = 20).
    concentration:
        ``s = concentration · C`` (the paper's and the reference scripts' 8).
    tolerance, norm:
        Matching radius floor and distance (the reference scripts: 0.01 and ℓ1).
    clean:
        The target's clean outputs, in query order, for ``centre="oracle_clean"`` only.
    centre_model, trainer:
        For the substitute centres: a model to centre on (or a dict from centre name to model),
        or the trainer that fits one in :meth:`prepare` (default: a plain
        :class:`SubstituteTrainer`), on the returned vectors (``"substitute"``) or on their
        one-hot top-1 (``"substitute_top1"``).
    refine:
        Extra rounds that draw new neighbourhoods around each row's current estimate and match
        again (0: the paper's single table). Not in the paper; it helps when the returned
        vectors are far from the clean ones (MAD, ModelGuard-W).
    seed:
        Seeds the table when :meth:`prepare` is not called (direct use); ``prepare`` reseeds from
        the run's generator.

    The table grows with the answers: each call of the recovery adds entries for the rows it has
    not seen yet (``recover`` is given every answer so far, in query order, as
    :func:`~modelsteal.attacks.extract` does) and matches every row against the whole table.
    """

    def __init__(
        self,
        defense: str = "none",
        defense_params: dict[str, Any] | None = None,
        *,
        centre: str | Sequence[str] = "returned",
        samples_per_query: int = 20,
        concentration: float = 8.0,
        tolerance: float = 0.01,
        norm: int | str = 1,
        clean: np.ndarray | None = None,
        centre_model: Any = None,
        trainer: Any = None,
        refine: int = 0,
        seed: int = 0,
        workers: int = 1,
    ) -> None:
        owner = "PartialBayes"
        self.defense = defense
        self.defense_params = dict(defense_params or {})
        names = (centre,) if isinstance(centre, str) else tuple(centre)
        if not names or len(set(names)) != len(names):
            raise InvalidParameterError(
                "The 'centre' parameter of PartialBayes must be a centre name or a tuple of "
                f"distinct names from {CENTRES}. Got {centre!r} instead."
            )
        for name in names:
            check_choice(name, name="centre", owner=owner, choices=CENTRES)
        self.centre = centre if isinstance(centre, str) else names
        self.centres = names  # a tuple even for a single centre
        self.samples_per_query = check_int(
            samples_per_query, name="samples_per_query", owner=owner, low=1
        )
        self.concentration = check_float(
            concentration, name="concentration", owner=owner, low=0, low_open=True
        )
        self.tolerance = check_float(tolerance, name="tolerance", owner=owner, low=0)
        self.norm = norm
        _norm_value(norm, owner)
        if "oracle_clean" in names and clean is None:
            raise InvalidParameterError(
                "centre='oracle_clean' is the reference code's oracle shortcut (an upper bound: "
                "an attacker does not have the target's clean outputs) and needs them passed "
                "explicitly as clean=... . Use centre='returned' or 'substitute' for an attack."
            )
        if clean is not None and "oracle_clean" not in names:
            raise InvalidParameterError(
                "clean=... is only used with centre='oracle_clean' (the labelled upper bound)."
            )
        self.clean = None if clean is None else np.asarray(clean, dtype=np.float64)
        self.centre_model = centre_model
        self.trainer = trainer
        self.seed = check_int(seed, name="seed", owner=owner, low=0)
        self.refine = check_int(refine, name="refine", owner=owner, low=0)
        self.workers = workers
        self._reset(np.random.default_rng(self.seed))

    def _centre_model(self, name: str) -> Any:
        if isinstance(self.centre_model, dict):
            return self.centre_model.get(name)
        return self.centre_model

    def _reset(self, rng: np.random.Generator) -> None:
        self.rng_ = rng
        self.simulator_ = simulated_defense(self.defense, self.defense_params)
        self.tables_: list[LookupTable] = []
        self.covered_ = 0

    def prepare(self, state: AttackState, rng: np.random.Generator) -> None:
        """Reseed from the run; for the substitute centres, fit the centring models."""
        self._reset(np.random.default_rng(rng.integers(2**63)))
        state.memo["pbayes_centre"] = self.centre
        needed = [
            c for c in self.centres if c in SUBSTITUTE_CENTRES and self._centre_model(c) is None
        ]
        if not needed:
            return
        answers, inputs = state.answers(), state.inputs()
        models = dict(self.centre_model) if isinstance(self.centre_model, dict) else {}
        for name in needed:
            models[name] = fit_centre_model(
                name,
                inputs,
                answers,
                trainer=self.trainer,
                input_shape=state.input_shape,
                seed=int(rng.integers(2**31)),
            )
        # A single substitute centre keeps the plain attribute, as before.
        self.centre_model = models[needed[0]] if self.centre in SUBSTITUTE_CENTRES else models

    def _centres(self, name: str, returned: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        if name == "returned":
            return returned
        if name == "oracle_clean":
            stop = self.covered_ + len(returned)
            if self.clean is None or len(self.clean) < stop:
                raise InvalidParameterError(
                    f"centre='oracle_clean' needs a clean row for each of the {stop} answers; "
                    f"clean has {0 if self.clean is None else len(self.clean)}."
                )
            return self.clean[self.covered_ : stop]
        model = self._centre_model(name)
        if model is None or x is None:
            raise InvalidParameterError(
                f"centre={name!r} needs a centring model and the queried inputs: run it "
                "through extract() (prepare trains one) or pass centre_model=... and x."
            )
        from modelsteal.models import predict_proba

        return predict_proba(model, np.asarray(x))

    def table(self) -> LookupTable:
        """The table built so far, all parts together."""
        if not self.tables_:
            c = 0 if self.clean is None else self.clean.shape[1]
            return LookupTable(np.empty((0, c)), np.empty((0, c)))
        return LookupTable(
            np.concatenate([t.clean for t in self.tables_]),
            np.concatenate([t.perturbed for t in self.tables_]),
        )

    def extend(self, returned: np.ndarray, x: np.ndarray | None) -> None:
        """Add table entries for the rows of ``returned`` not covered yet."""
        returned = np.asarray(returned, dtype=np.float64)
        if len(returned) < self.covered_:
            raise InputValidationError(
                f"PartialBayes: got {len(returned)} answers after {self.covered_}; recover takes "
                "every answer so far, in query order."
            )
        new = slice(self.covered_, len(returned))
        if new.start == new.stop:
            return
        x_new = None if x is None else np.asarray(x)[new]
        for name in self.centres:  # one neighbourhood per centre: an equal mixture
            self.tables_.append(
                build_table(
                    self._centres(name, returned[new], x_new),
                    self.simulator_,
                    x=x_new,
                    samples_per_centre=self.samples_per_query,
                    concentration=self.concentration,
                    rng=self.rng_,
                )
            )
        self.covered_ = len(returned)

    def _match(self, returned: np.ndarray) -> np.ndarray:
        recovered, _ = match_table(
            self.table(),
            returned,
            tolerance=self.tolerance,
            norm=self.norm,
            same_top1=bool(self.simulator_.preserves_argmax),
            workers=self.workers,
        )
        return recovered

    def __call__(self, returned: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        returned = np.asarray(returned, dtype=np.float64)
        start = self.covered_
        self.extend(returned, x)
        recovered = self._match(returned)
        for _ in range(self.refine if len(returned) > start else 0):
            # Re-centre the new rows' neighbourhoods on their current estimate (an extension:
            # the paper samples once).
            new = slice(start, len(returned))
            self.tables_.append(
                build_table(
                    recovered[new],
                    self.simulator_,
                    x=None if x is None else np.asarray(x)[new],
                    samples_per_centre=self.samples_per_query,
                    concentration=self.concentration,
                    rng=self.rng_,
                )
            )
            recovered = self._match(returned)
        return recovered


@RECOVERIES.register("pbayes")
def pbayes(**params: Any) -> PartialBayes:
    """Partial Bayes (Tang et al. 2024); see :class:`PartialBayes` for the parameters."""
    return PartialBayes(**params)
