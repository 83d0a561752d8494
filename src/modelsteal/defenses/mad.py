"""MAD — Prediction Poisoning (Orekondy, Schiele, Fritz, ICLR 2020, arXiv 1906.10908).

MAD perturbs each answer so that the gradient an attacker would follow when training on it points
away from the gradient of the clean answer. With ``G`` (C × D) the Jacobian whose row ``k`` is
∇_w[−log softmax(F(x; w))_k] for a proxy of the attacker's model ``F``, MAD looks for

    ỹ = argmax ‖Gᵀỹ/‖Gᵀỹ‖ − Gᵀy/‖Gᵀy‖‖²   s.t. ỹ on the simplex, ‖ỹ − y‖_p ≤ ε

with the paper's heuristic: an oracle picks a target vertex ``y*`` of the simplex, and a line
search moves ``y`` towards it, ``ỹ = (1 − α) y + α y*`` with ``α = min(1, ε / (‖y − y*‖_p + 1e-7))``
(so ‖ỹ − y‖_p < ε always).

The objective only needs inner products of columns of ``Gᵀ``, so everything here works on the
per-row Gram matrix ``M = G Gᵀ`` (C × C). For the last linear layer (``max_grad_layer="last"``,
the reference's default) ``G`` has a closed form: with ``h`` the penultimate activation and
``p = softmax(F(x))``, row ``k`` is ``vec((p − e_k) hᵀ)``, so ``M = ‖h‖² B Bᵀ`` with
``B = 1 pᵀ − I``, i.e. ``M_kl = ‖h‖² (‖p‖² − p_k − p_l + δ_kl)``; one forward pass with a hook
gives it for the whole batch. For images the forward pass runs on a channels-last copy of the
proxy, 64 rows at a time (together about twice as fast on CPU, the same weights; logits equal to
float32 rounding), and the extreme oracle scores the C vertices from ``M`` in O(C²) per row.
``max_grad_layer="all"`` uses the Jacobian of the whole network (``torch.func.jacrev`` + ``vmap``,
in chunks) and the same oracle code.

A consequence of the closed form worth knowing: with the last layer, Gᵀỹ = vec((p − ỹ) hᵀ) for
every ỹ on the simplex, so the normalised objective depends on the proxy only through its softmax
``p`` (‖h‖ cancels), and the unnormalised surrogate (``objmax=False``) is ‖h‖² ‖ỹ − y‖², which does
not depend on the proxy at all: ``oracle="extreme"`` then picks the least likely class, exactly
like ``oracle="argmin"``. :func:`mad_per_sample` is the row-by-row version, the way
the reference code computes it (one ``autograd.grad`` per class and row, a Python loop over
candidate vertices); it gives the same answers and is the baseline of ``benchmarks/mad.py``.

Departures from the reference code (``tribhuvanesh/prediction-poisoning``,
``defenses/victim/bb_mad.py``; ModelGuard's ``defenses/victim/mad.py``):

- the proxy, when not given, is a randomly initialised ``build_model(proxy_arch, ...)`` built
  from ``seed`` (the reference's "scratch" proxy is a random network trained with lr = 0);
- ``oracle="random"`` picks the vertex from a hash of ``(seed, x)``, not from the global RNG:
  repeated queries get the same answer, and no state is kept;
- with ``oracle="argmax"``, a row whose argmax would still move through float rounding (possible
  only when α·1e-5 falls below the precision of ``y``, as in the reference's float32 code) is
  answered unperturbed, so the argmax is kept without exception;
- a zero gradient image (‖Gᵀỹ‖ = 0) counts as the zero vector in the normalised objective, where
  the reference produces NaN (and, in its greedy oracle, crashes);
- the greedy argmax oracle (C > 10) stops when every class is in the set (the reference crashes
  there when C(C−1)/2 < 1024) and uses the objective chosen by ``objmax`` (the reference's greedy
  always uses the normalised one, on y smoothed by 1e-8);
- ``max_grad_layer="all"`` is the whole network; ModelGuard's "all" keeps only the first
  parameter's gradient (``grads, *_ = autograd.grad(nll_k, params)``);
- no KL distance, no ``projections`` optimiser, no PuLP LP oracles.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from modelsteal._checks import check_choice, check_float, check_int, check_probabilities
from modelsteal.defenses._base import DEFENSES, Defense, _onto_simplex
from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.models import MODELS, build_model

ORACLES = ("extreme", "argmax", "random", "argmin")
YDISTS = ("l1", "l2")
GRAD_LAYERS = ("last", "all")
PROXY_DTYPES = ("float32", "bfloat16")

_EXACT_ARGMAX_MAX_CLASSES = 10  # enumerate all 2^(C−1) vertex sets up to here, greedy above
_GREEDY_MAX_EVALS = 1024  # objective evaluations per row of the greedy argmax oracle
_TOP_BUMP = 1e-5  # extra mass on the top class in argmax-oracle vertices (as the reference)
_ALPHA_EPS = 1e-7  # the reference's guard in α = ε / (‖y − y*‖ + 1e-7)
_ORACLE_CHUNK = 1 << 21  # rows × candidates × C evaluated at once in the oracle
_FORWARD_CHUNK = 1024  # proxy rows per forward pass ...
_IMAGE_CHUNK = 64  # ... for images: larger batches of conv activations spill the CPU caches
_JACOBIAN_BUDGET = 1 << 24  # float32 Jacobian entries per vmap chunk with max_grad_layer="all"


def _check_bool(value: Any, *, name: str, owner: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a bool. Got {value!r} instead."
        )
    return bool(value)


@DEFENSES.register("mad")
class MAD(Defense):
    """Maximizing Angular Deviation of the attacker's gradient (Orekondy et al., ICLR 2020).

    Parameters
    ----------
    epsilon:
        Distortion budget: ‖ỹ − y‖_p ≤ ε with p from ``ydist``. In (0, 2].
    oracle:
        How the target vertex ``y*`` is chosen: ``"extreme"`` (the one-hot vertex that maximises
        the objective), ``"argmax"`` (uniform mass on a set of classes that contains the top class,
        plus 1e-5 on it: the answer keeps its argmax), ``"random"`` (a one-hot vertex drawn from
        a hash of ``seed`` and the input) or ``"argmin"`` (the one-hot of the least likely class).
    ydist:
        ``"l1"`` or ``"l2"``: the norm of the budget.
    objmax:
        Maximise the normalised (angular) objective in the oracle (True, as the reference scripts
        run it) or the unnormalised surrogate ‖Gᵀ(ỹ − y)‖² (False, the reference's class default).
    proxy:
        The defender's stand-in for the attacker's model, an ``nn.Module`` returning logits. It is
        put in eval mode and never trained. None builds a randomly initialised one on first use.
    proxy_arch:
        Architecture of the built proxy, a name from ``modelsteal.models.MODELS`` or ``"auto"``
        (``cnn`` for (C, H, W) inputs, ``mlp`` otherwise).
    max_grad_layer:
        ``"last"``: the gradient with respect to the weight of the last ``nn.Linear`` layer (closed
        form, batched); ``"all"``: with respect to every parameter (``torch.func``, slower).
    seed:
        Seeds the built proxy and the ``"random"`` oracle.
    proxy_dtype:
        ``"float32"``, or ``"bfloat16"`` to run the proxy's passes under bfloat16 autocast:
        several times faster on CPUs with bfloat16 matrix units (AMX, AVX512-BF16), slower on
        others. The Gram matrices and everything after them stay float64, so the promises
        (ℓ_p ≤ ε, simplex, argmax with ``oracle="argmax"``) hold as in float32; the answers
        differ from float32's where the proxy's rounding changes which vertex the oracle picks.
        (:func:`mad_per_sample`, the reference loop, always runs the proxy in float32.)
    """

    name = "mad"
    needs_inputs = True

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        oracle: str = "extreme",
        ydist: str = "l1",
        objmax: bool = True,
        proxy: nn.Module | None = None,
        proxy_arch: str = "auto",
        max_grad_layer: str = "last",
        seed: int = 0,
        proxy_dtype: str = "float32",
    ) -> None:
        self.epsilon = check_float(
            epsilon, name="epsilon", owner="MAD", low=0.0, high=2.0, low_open=True
        )
        self.oracle = check_choice(oracle, name="oracle", owner="MAD", choices=ORACLES)
        self.ydist = check_choice(ydist, name="ydist", owner="MAD", choices=YDISTS)
        self.objmax = _check_bool(objmax, name="objmax", owner="MAD")
        if proxy is not None and not isinstance(proxy, nn.Module):
            raise InvalidParameterError(
                "The 'proxy' parameter of MAD must be a torch.nn.Module returning logits, or None "
                f"for a randomly initialised one. Got {type(proxy).__name__} instead."
            )
        self.proxy = proxy
        self.proxy_arch = check_choice(
            proxy_arch, name="proxy_arch", owner="MAD", choices=("auto", *MODELS.names())
        )
        self.max_grad_layer = check_choice(
            max_grad_layer, name="max_grad_layer", owner="MAD", choices=GRAD_LAYERS
        )
        self.seed = check_int(seed, name="seed", owner="MAD", low=0)
        self.proxy_dtype = check_choice(
            proxy_dtype, name="proxy_dtype", owner="MAD", choices=PROXY_DTYPES
        )
        self._proxy: nn.Module | None = proxy
        self._proxy_shape: tuple[tuple[int, ...], int] | None = None
        self._fast_proxy: tuple[tuple[Any, ...], nn.Module] | None = None

    @property
    def preserves_argmax(self) -> bool:  # type: ignore[override]
        return self.oracle == "argmax"

    @property
    def max_l1(self) -> float | None:
        return self.epsilon if self.ydist == "l1" else None

    # ---- the proxy and its Jacobians -------------------------------------------------------

    def proxy_model(self, x: np.ndarray, n_classes: int) -> nn.Module:
        """The proxy used for inputs like ``x`` and ``n_classes`` classes (built on first use)."""
        if self._proxy is None:
            shape = tuple(int(s) for s in np.shape(x)[1:])
            arch = self.proxy_arch
            if arch == "auto":
                arch = "cnn" if len(shape) == 3 else "mlp"
            self._proxy = build_model(arch, shape, n_classes, seed=self.seed)
            self._proxy_shape = (shape, n_classes)
        elif self._proxy_shape is not None:
            shape = tuple(int(s) for s in np.shape(x)[1:])
            if (shape, n_classes) != self._proxy_shape:
                built_shape, built_classes = self._proxy_shape
                raise InputValidationError(
                    f"MAD built its proxy for inputs of shape {built_shape} and {built_classes} "
                    f"classes; got inputs of shape {shape} and {n_classes} classes. Use one MAD "
                    "per target, or pass proxy=."
                )
        self._proxy.eval()
        return self._proxy

    def jacobian_gram(self, x: np.ndarray, n_classes: int) -> np.ndarray:
        """Per-row Gram matrices ``G Gᵀ`` of the proxy's NLL Jacobians, shape (n, C, C), float64."""
        proxy = self.proxy_model(x, n_classes)
        xt = _as_tensor(x, proxy)
        if self.max_grad_layer != "last":
            with _precision(self.proxy_dtype, xt.device):
                return _full_gram(proxy, xt, n_classes)
        chunk = _FORWARD_CHUNK
        if xt.ndim == 4 and xt.device.type == "cpu":
            fast = self._channels_last(proxy)
            if fast is not proxy:  # a convolutional proxy, copied in channels-last order
                proxy, chunk = fast, _IMAGE_CHUNK
                xt = xt.contiguous(memory_format=torch.channels_last)
        with _precision(self.proxy_dtype, xt.device):
            grams = [
                _last_layer_gram(proxy, xt[s : s + chunk], n_classes)
                for s in range(0, len(xt), chunk)
            ]
        return np.concatenate(grams, axis=0)

    def _channels_last(self, proxy: nn.Module) -> nn.Module:
        """A copy of ``proxy`` with its 4-D weights in channels-last memory order, for images.

        On CPU, convolutions over a batch run about twice as fast in that order (oneDNN), with
        the same weights; the logits differ by float32 rounding (~1e-7). The copy is made again
        whenever a parameter of the proxy is replaced or changed in place; a proxy that cannot
        be copied is used as it is.
        """
        params = list(proxy.parameters())
        if not any(p.ndim == 4 for p in params):
            return proxy
        key = tuple((id(p), p.data_ptr(), p._version) for p in params)
        if self._fast_proxy is None or self._fast_proxy[0] != key:
            try:
                fast = copy.deepcopy(proxy).to(memory_format=torch.channels_last).eval()
            except Exception:  # an uncopyable module: use it as it is
                fast = proxy
            self._fast_proxy = (key, fast)
        return self._fast_proxy[1]

    # ---- the oracle and the line search ------------------------------------------------------

    def oracle_targets(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The target vertices ``y*`` (n, C) the oracle picks for rows ``y`` and inputs ``x``."""
        c = y.shape[1]
        if self.oracle == "random":
            return _one_hot(_hashed_classes(x, c, self.seed), c)
        if self.oracle == "argmin":
            return _one_hot(y.argmin(axis=1), c)
        gram = self.jacobian_gram(x, c)
        if self.oracle == "extreme":
            return _oracle_extreme(y, gram, self.objmax)
        if c <= _EXACT_ARGMAX_MAX_CLASSES:
            return _oracle_argmax_exact(y, gram, self.objmax)
        return _oracle_argmax_greedy(y, gram, self.objmax)

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        x = _check_x(x)
        out = mad_linesearch(y, self.oracle_targets(y, x), epsilon=self.epsilon, ydist=self.ydist)
        if self.oracle == "argmax":
            out = _keep_argmax(out, y)
        return out


# ---- objective, line search, oracles (numpy, batched over rows) -------------------------------


def mad_objective(
    candidates: np.ndarray, y: np.ndarray, gram: np.ndarray, *, normalized: bool = True
) -> np.ndarray:
    """MAD's objective for each candidate row, computed from the Gram matrices ``M = G Gᵀ``.

    ``candidates`` is (n, m, C) or (m, C) (the same for every row), ``y`` is (n, C) and ``gram``
    (n, C, C). Returns (n, m): ‖Gᵀỹ/‖Gᵀỹ‖ − Gᵀy/‖Gᵀy‖‖² when ``normalized`` (a zero image counts
    as the zero vector), else ‖Gᵀ(ỹ − y)‖². Uses ‖Gᵀd‖² = dᵀ M d, so G itself is never needed.
    """
    cand = np.asarray(candidates, dtype=np.float64)
    if normalized:
        # (m, C) candidates shared by every row: (m, C) @ (n, C, C) broadcasts over the rows
        # (one BLAS product each) where a stride-0 (n, m, C) copy would take numpy's slow loop
        spec = "nmc,mc->nm" if cand.ndim == 2 else "nmc,nmc->nm"
        q_cand = np.einsum(spec, cand @ gram, cand)
        q_y = np.einsum("nc,nc->n", np.einsum("ncd,nd->nc", gram, y), y)
        d = cand * _inv_sqrt(q_cand)[..., None] - (y * _inv_sqrt(q_y)[:, None])[:, None, :]
    else:
        d = cand - y[:, None, :]
    return np.maximum(np.einsum("nmc,nmc->nm", d @ gram, d), 0.0)


def mad_linesearch(y: np.ndarray, ystar: np.ndarray, *, epsilon: float, ydist: str) -> np.ndarray:
    """ỹ = (1 − α) y + α y* with α = clip(ε / (‖y − y*‖_p + 1e-7), 0, 1): ‖ỹ − y‖_p < ε."""
    diff = y - ystar
    norm = np.abs(diff).sum(axis=1) if ydist == "l1" else np.sqrt((diff**2).sum(axis=1))
    alpha = np.clip(epsilon / (norm + _ALPHA_EPS), 0.0, 1.0)[:, None]
    return (1.0 - alpha) * y + alpha * ystar


def _inv_sqrt(q: np.ndarray) -> np.ndarray:
    positive = q > 0
    return np.where(positive, 1.0 / np.sqrt(np.where(positive, q, 1.0)), 0.0)


def _one_hot(idx: np.ndarray, c: int) -> np.ndarray:
    out = np.zeros((len(idx), c))
    out[np.arange(len(idx)), idx] = 1.0
    return out


def _oracle_extreme(y: np.ndarray, gram: np.ndarray, objmax: bool) -> np.ndarray:
    """The best one-hot vertex per row: :func:`mad_objective` of e_k in O(C²) per row.

    With d = a e_k − b y, dᵀ M d = a² M_kk − 2 a b (M y)_k + b² yᵀM y, where a = 1/√M_kk and
    b = 1/√(yᵀM y) for the normalised objective (0 for a zero image) and a = b = 1 otherwise.
    """
    c = y.shape[1]
    m_kk = np.einsum("nkk->nk", gram)
    my = np.einsum("ncd,nd->nc", gram, y)
    q_y = np.einsum("nc,nc->n", my, y)
    if objmax:
        a, b = _inv_sqrt(m_kk), _inv_sqrt(q_y)[:, None]
    else:
        a, b = np.ones_like(m_kk), np.ones((len(y), 1))
    vals = np.maximum(a * a * m_kk - 2.0 * a * b * my + b * b * q_y[:, None], 0.0)
    return _one_hot(vals.argmax(axis=1), c)  # first best vertex, as the reference's strict '>'


@functools.cache
def argmax_vertices(n_classes: int, top: int) -> np.ndarray:
    """The argmax oracle's candidates for top class ``top``: every class set containing it, with
    uniform mass plus 1e-5 on ``top``, in the reference's order (``itertools.product``)."""
    codes = np.arange(1 << n_classes)
    bits = (codes[:, None] >> np.arange(n_classes - 1, -1, -1)[None, :]) & 1
    verts = bits[bits[:, top] == 1].astype(np.float64)
    verts[:, top] += _TOP_BUMP
    verts /= verts.sum(axis=1, keepdims=True)
    verts.flags.writeable = False
    return verts


def _oracle_argmax_exact(y: np.ndarray, gram: np.ndarray, objmax: bool) -> np.ndarray:
    c = y.shape[1]
    top = y.argmax(axis=1)
    out = np.empty_like(y)
    per_chunk = max(1, _ORACLE_CHUNK // ((1 << (c - 1)) * c))
    for t in np.unique(top):
        verts = argmax_vertices(c, int(t))
        rows = np.flatnonzero(top == t)
        for s in range(0, len(rows), per_chunk):
            r = rows[s : s + per_chunk]
            vals = mad_objective(verts, y[r], gram[r], normalized=objmax)
            out[r] = verts[vals.argmax(axis=1)]
    return out


def _oracle_argmax_greedy(y: np.ndarray, gram: np.ndarray, objmax: bool) -> np.ndarray:
    """Grow the class set from the top class, adding the class that maximises the objective, for
    at most ~1024 evaluations per row; return the best set seen. All rows move in lockstep."""
    n, c = y.shape
    rows = np.arange(n)
    top = y.argmax(axis=1)
    chosen = np.zeros((n, c), dtype=bool)
    chosen[rows, top] = True
    best = np.zeros_like(y)
    best_val = np.full(n, -np.inf)
    evals, size = 0, 1
    eye = np.eye(c, dtype=bool)
    while evals < _GREEDY_MAX_EVALS and size < c:
        cand = (chosen[:, None, :] | eye[None, :, :]).astype(np.float64)  # add class k to the set
        cand[rows, :, top] += _TOP_BUMP
        cand /= cand.sum(axis=2, keepdims=True)
        vals = mad_objective(cand, y, gram, normalized=objmax)
        vals[chosen] = -np.inf  # classes already in the set are not candidates
        k = vals.argmax(axis=1)
        v = vals[rows, k]
        better = v > best_val
        best[better] = cand[rows[better], k[better]]
        best_val = np.where(better, v, best_val)
        chosen[rows, k] = True
        evals += c - size
        size += 1
    return best


def _keep_argmax(out: np.ndarray, y: np.ndarray) -> np.ndarray:
    moved = out.argmax(axis=1) != y.argmax(axis=1)
    if moved.any():  # only through rounding; see the module docstring
        out = out.copy()
        out[moved] = y[moved]
    return out


def _hashed_classes(x: np.ndarray, c: int, seed: int) -> np.ndarray:
    flat = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    key = int(seed).to_bytes(8, "little")
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest(), "little"
            )
            % c
            for row in flat
        ],
        dtype=np.int64,
    )


def _check_x(x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or arr.ndim < 2:
        raise InputValidationError(
            "MAD.perturb: x must be a numeric batch of shape (n, ...). "
            f"Got an array of dtype {arr.dtype} and shape {arr.shape} instead."
        )
    if not np.all(np.isfinite(arr)):
        raise InputValidationError("MAD.perturb: the inputs x must be finite.")
    return arr


# ---- Jacobians of the proxy (torch) ---------------------------------------------------------


def _precision(dtype: str, device: torch.device) -> Any:
    """The autocast context for the proxy's passes (none for float32)."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _as_tensor(x: np.ndarray, proxy: nn.Module) -> torch.Tensor:
    ref = next(proxy.parameters(), None)
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    device = ref.device if ref is not None else torch.device("cpu")
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)


def _last_linear(proxy: nn.Module) -> nn.Linear:
    linears = [m for m in proxy.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InvalidParameterError(
            "MAD with max_grad_layer='last' needs a proxy whose logits come from an nn.Linear "
            f"layer; {type(proxy).__name__} has none. Use max_grad_layer='all'."
        )
    return linears[-1]


def _last_layer_gram(proxy: nn.Module, xt: torch.Tensor, c: int) -> np.ndarray:
    """M = ‖h‖² B Bᵀ per row, B = 1 pᵀ − I: the Gram of ∇_W −log p_k = (p − e_k) hᵀ."""
    layer = _last_linear(proxy)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.append((inputs[0], output))

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = proxy(xt)
    finally:
        handle.remove()
    if len(seen) != 1 or seen[0][0].ndim != 2 or not torch.equal(seen[0][1], logits):
        raise InvalidParameterError(
            "MAD with max_grad_layer='last' needs a proxy whose output is the output of its last "
            "nn.Linear layer, called once on (n, features) inputs. Use max_grad_layer='all' for "
            "this proxy."
        )
    _check_logits(logits, len(xt), c)
    h = seen[0][0].detach().to("cpu", torch.float64).numpy()
    p = torch.softmax(logits.detach().to("cpu", torch.float64), dim=1).numpy()
    # B Bᵀ with B = 1 pᵀ − I (row k: p − e_k) is ‖p‖² − p_k − p_l + δ_kl: O(C²) per row
    bbt = (p**2).sum(axis=1)[:, None, None] - p[:, :, None] - p[:, None, :] + np.eye(c)
    return (h**2).sum(axis=1)[:, None, None] * bbt


def _full_gram(proxy: nn.Module, xt: torch.Tensor, c: int) -> np.ndarray:
    """Σ over parameters of J Jᵀ, J the per-row Jacobian of −log softmax (vmap over jacrev)."""
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in proxy.named_parameters()}
    buffers = {k: v.detach() for k, v in proxy.named_buffers()}
    with torch.no_grad():
        _check_logits(proxy(xt[:1]), 1, c)

    def nll(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        z = functional_call(proxy, {**p, **buffers}, (xi.unsqueeze(0),))
        return -torch.log_softmax(z, dim=1).squeeze(0)

    jac = vmap(jacrev(nll), in_dims=(None, 0))
    n_params = sum(v.numel() for v in params.values())
    chunk = max(1, _JACOBIAN_BUDGET // max(1, c * n_params))
    out = np.zeros((len(xt), c, c))
    for s in range(0, len(xt), chunk):
        blocks = jac(params, xt[s : s + chunk])
        for j in blocks.values():
            jf = j.detach().reshape(j.shape[0], c, -1).to("cpu", torch.float64)
            out[s : s + len(jf)] += (jf @ jf.transpose(1, 2)).numpy()
    return out


def _check_logits(logits: torch.Tensor, n: int, c: int) -> None:
    if tuple(logits.shape) != (n, c):
        raise InputValidationError(
            f"MAD: the proxy returned shape {tuple(logits.shape)} for {n} rows; the answers have "
            f"{c} classes, so it must return ({n}, {c}) logits."
        )


# ---- the row-by-row reference ---------------------------------------------------------------


@contextmanager
def _grad_enabled(params: list[nn.Parameter]) -> Iterator[None]:
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


def _row_jacobian(proxy: nn.Module, xi: torch.Tensor, c: int, layer: str) -> np.ndarray:
    """G (C × D) for one input, one ``autograd.grad`` per class, as the reference does."""
    params = [_last_linear(proxy).weight] if layer == "last" else list(proxy.parameters())
    with _grad_enabled(params):
        nll = -torch.log_softmax(proxy(xi), dim=1)[0]
        _check_logits(nll[None], 1, c)
        rows = []
        for k in range(c):
            grads = torch.autograd.grad(nll[k], params, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows).detach().to("cpu", torch.float64).numpy()


def _objective_explicit(
    ytilde: np.ndarray, y: np.ndarray, g: np.ndarray, normalized: bool
) -> float:
    u, v = g.T @ ytilde, g.T @ y
    if normalized:
        nu, nv = np.linalg.norm(u), np.linalg.norm(v)
        u = u / nu if nu > 0 else np.zeros_like(u)
        v = v / nv if nv > 0 else np.zeros_like(v)
    return float(np.sum((u - v) ** 2))


def _row_oracle(defense: MAD, yi: np.ndarray, g: np.ndarray) -> np.ndarray:
    c = len(yi)
    top = int(yi.argmax())
    if defense.oracle == "extreme":
        candidates: Any = np.eye(c)
    elif c <= _EXACT_ARGMAX_MAX_CLASSES:
        candidates = argmax_vertices(c, top)
    else:
        return _row_greedy(yi, g, defense.objmax)
    best, best_val = None, -1.0
    for cand in candidates:
        val = _objective_explicit(cand, yi, g, defense.objmax)
        if val > best_val:
            best, best_val = cand, val
    assert best is not None
    return np.array(best)


def _row_greedy(yi: np.ndarray, g: np.ndarray, objmax: bool) -> np.ndarray:
    c = len(yi)
    top = int(yi.argmax())
    chosen = [top]
    best, best_val, evals = None, -1.0, 0
    while evals < _GREEDY_MAX_EVALS and len(chosen) < c:
        round_best, round_k, round_val = None, -1, -math.inf
        for k in sorted(set(range(c)) - set(chosen)):
            cand = np.zeros(c)
            cand[[*chosen, k]] = 1.0
            cand[top] += _TOP_BUMP
            cand /= cand.sum()
            val = _objective_explicit(cand, yi, g, objmax)
            if val > round_val:
                round_best, round_k, round_val = cand, k, val
        if round_val > best_val:
            best, best_val = round_best, round_val
        evals += c - len(chosen)
        chosen.append(round_k)
    assert best is not None
    return best


def mad_per_sample(defense: MAD, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """MAD row by row, the way the reference code computes it: for each row, one forward pass and
    C ``autograd.grad`` calls build G (C × D), then a Python loop over candidate vertices and the
    line search. Same answers as ``defense.perturb(y, x=x)`` with ``proxy_dtype="float32"`` (the
    loop always runs the proxy in float32, as the reference does); used by tests and benchmarks."""
    y = check_probabilities(y, where="mad_per_sample(y)")
    x = _check_x(x)
    if len(x) != len(y):
        raise InvalidParameterError(f"mad_per_sample: y has {len(y)} rows but x has {len(x)}.")
    n, c = y.shape
    out = np.empty_like(y)
    needs_g = defense.oracle in ("extreme", "argmax")
    proxy = defense.proxy_model(x, c) if needs_g else None
    for i in range(n):
        if defense.oracle == "random":
            ystar = _one_hot(_hashed_classes(x[i : i + 1], c, defense.seed), c)[0]
        elif defense.oracle == "argmin":
            ystar = _one_hot(y[i : i + 1].argmin(axis=1), c)[0]
        else:
            assert proxy is not None
            xi = _as_tensor(x[i : i + 1], proxy)
            g = _row_jacobian(proxy, xi, c, defense.max_grad_layer)
            ystar = _row_oracle(defense, y[i], g)
        row = mad_linesearch(
            y[i : i + 1], ystar[None], epsilon=defense.epsilon, ydist=defense.ydist
        )
        if defense.oracle == "argmax":
            row = _keep_argmax(row, y[i : i + 1])
        out[i] = row[0]
    return _onto_simplex(out)
