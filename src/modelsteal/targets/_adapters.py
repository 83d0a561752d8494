"""Adapters that turn a model into a :class:`Target`: torch, scikit-learn, ONNX, plain function."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from modelsteal._checks import check_choice, check_inputs, check_int, check_shape
from modelsteal.errors import InvalidParameterError
from modelsteal.targets._base import BaseTarget

Output = Literal["probabilities", "logits"]


class FunctionTarget(BaseTarget):
    """A plain callable ``fn(x) -> (n, C)`` as a target (probabilities or logits)."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        *,
        n_classes: int,
        input_shape: Sequence[int],
        output: Output = "probabilities",
    ) -> None:
        if not callable(fn):
            raise InvalidParameterError(
                f"FunctionTarget needs a callable fn(x) -> (n, C) array. Got {fn!r} instead."
            )
        self.fn = fn
        self.n_classes = check_int(n_classes, name="n_classes", owner="FunctionTarget", low=2)
        self.input_shape = check_shape(input_shape, name="input_shape", owner="FunctionTarget")
        self._output = check_choice(
            output, name="output", owner="FunctionTarget", choices=("probabilities", "logits")
        )

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x)


class TorchTarget(BaseTarget):
    """A ``torch.nn.Module`` as a target. The module is put in eval mode and never trained here.

    ``output`` says what the module returns: ``"logits"`` (default, softmax is applied) or
    ``"probabilities"``. Queries run in batches of ``batch_size`` without gradients; ``explain``
    returns the gradient of the predicted class's logit with respect to each input.
    """

    def __init__(
        self,
        module: Any,
        *,
        input_shape: Sequence[int],
        n_classes: int | None = None,
        output: Output = "logits",
        batch_size: int = 512,
    ) -> None:
        import torch

        if not isinstance(module, torch.nn.Module):
            raise InvalidParameterError(
                f"TorchTarget needs a torch.nn.Module. Got {type(module).__name__} instead."
            )
        try:
            module.eval()
        except NotImplementedError:  # torch.export modules are fixed in their exported mode
            pass
        self.module = module
        self.input_shape = check_shape(input_shape, name="input_shape", owner="TorchTarget")
        self._output = check_choice(
            output, name="output", owner="TorchTarget", choices=("probabilities", "logits")
        )
        self.batch_size = check_int(batch_size, name="batch_size", owner="TorchTarget", low=1)
        if n_classes is None:
            with torch.no_grad():
                probe = self.module(torch.zeros((1, *self.input_shape)))
            n_classes = int(probe.shape[-1])
        self.n_classes = check_int(n_classes, name="n_classes", owner="TorchTarget", low=2)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        outs = []
        with torch.no_grad():
            for start in range(0, len(x), self.batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + self.batch_size]))
                outs.append(self.module(chunk).double().numpy())
        return np.concatenate(outs, axis=0)

    def explain(self, x: np.ndarray) -> np.ndarray:
        import torch

        batch = check_inputs(x, input_shape=self.input_shape, where="TorchTarget.explain")
        grads = []
        for start in range(0, len(batch), self.batch_size):
            chunk = torch.from_numpy(np.array(batch[start : start + self.batch_size]))
            chunk.requires_grad_(True)
            logits = self.module(chunk)
            picked = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
            (grad,) = torch.autograd.grad(picked, chunk)
            grads.append(grad.double().numpy())
        return np.concatenate(grads, axis=0)


class SklearnTarget(BaseTarget):
    """A fitted scikit-learn classifier with ``predict_proba`` as a target.

    Columns follow ``estimator.classes_``; ``classes`` keeps those original labels.
    """

    def __init__(self, estimator: Any, *, input_shape: Sequence[int] | None = None) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise InvalidParameterError(
                f"SklearnTarget needs a fitted classifier with predict_proba. "
                f"{type(estimator).__name__} has none (for SVC, fit with probability=True)."
            )
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise InvalidParameterError(
                f"SklearnTarget needs a fitted estimator; {type(estimator).__name__} has no "
                "classes_. Call fit(X, y) first."
            )
        self.estimator = estimator
        self.classes = np.asarray(classes)
        self.n_classes = check_int(len(classes), name="n_classes", owner="SklearnTarget", low=2)
        n_features = getattr(estimator, "n_features_in_", None)
        if input_shape is None:
            if n_features is None:
                raise InvalidParameterError(
                    "SklearnTarget could not read n_features_in_ from the estimator; pass "
                    "input_shape=(n_features,)."
                )
            input_shape = (int(n_features),)
        self.input_shape = check_shape(input_shape, name="input_shape", owner="SklearnTarget")
        if n_features is not None and math.prod(self.input_shape) != int(n_features):
            raise InvalidParameterError(
                f"The estimator takes {int(n_features)} features but input_shape "
                f"{self.input_shape} has {math.prod(self.input_shape)}; the data does not fit "
                "this model."
            )

    def _predict(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1).astype(np.float64)
        return self.estimator.predict_proba(flat)


class OnnxTarget(BaseTarget):
    """An ONNX model run with onnxruntime on the CPU.

    The first graph input takes the batch; ``output_name`` picks the output (default: the first
    output whose last dimension is a class axis, i.e. a 2-D float tensor). Models exported from
    scikit-learn with ``zipmap=False`` and torch models both work; declare ``output="logits"``
    when the graph ends before its softmax.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        *,
        input_shape: Sequence[int] | None = None,
        n_classes: int | None = None,
        output: Output = "probabilities",
        output_name: str | None = None,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        source = model if isinstance(model, bytes) else str(Path(model))
        self.session = ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )
        graph_input = self.session.get_inputs()[0]
        self._input_name = graph_input.name
        self._input_dtype = np.float64 if "double" in graph_input.type else np.float32
        if input_shape is None:
            dims = graph_input.shape[1:]
            if not dims or not all(isinstance(d, int) for d in dims):
                raise InvalidParameterError(
                    f"The ONNX input {graph_input.name!r} has shape {graph_input.shape}; pass "
                    "input_shape=(...) for one example."
                )
            input_shape = dims
        self.input_shape = check_shape(input_shape, name="input_shape", owner="OnnxTarget")
        outputs = self.session.get_outputs()
        if output_name is None:
            candidates = [o.name for o in outputs if "float" in o.type or "double" in o.type]
            candidates = [n for n in candidates if "prob" in n.lower()] or candidates
            if not candidates:
                raise InvalidParameterError(
                    "The ONNX model has no float output to read probabilities from; outputs: "
                    + ", ".join(f"{o.name} ({o.type})" for o in outputs)
                )
            output_name = candidates[0]
        elif output_name not in {o.name for o in outputs}:
            raise InvalidParameterError(
                f"The 'output_name' parameter of OnnxTarget must be one of "
                f"{[o.name for o in outputs]}. Got {output_name!r} instead."
            )
        self._output_name = output_name
        self._output = check_choice(
            output, name="output", owner="OnnxTarget", choices=("probabilities", "logits")
        )
        if n_classes is None:
            probe = self._predict(np.zeros((1, *self.input_shape), dtype=np.float32))
            n_classes = int(np.asarray(probe).shape[-1])
        self.n_classes = check_int(n_classes, name="n_classes", owner="OnnxTarget", low=2)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        feed = {self._input_name: x.astype(self._input_dtype, copy=False)}
        (out,) = self.session.run([self._output_name], feed)
        return np.asarray(out)
