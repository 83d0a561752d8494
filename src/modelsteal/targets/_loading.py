"""Loading a saved model file as a :class:`Target`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from modelsteal.errors import InvalidParameterError
from modelsteal.targets._adapters import OnnxTarget, SklearnTarget, TorchTarget
from modelsteal.targets._base import BaseTarget
from modelsteal.targets._http import HttpTarget

SUFFIXES = {
    ".pt": "torch",
    ".pth": "torch",
    ".pt2": "export",
    ".onnx": "onnx",
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
}


def load_target(
    path: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    batch_size: int = 512,
    api_key: str | None = None,
) -> BaseTarget | HttpTarget:
    """Open a model file (or a server's URL) as a target, choosing the adapter by the suffix.

    - ``http://...`` / ``https://...``: a prediction server (``modelsteal serve``), queried with
      ``api_key``; an :class:`~modelsteal.targets.HttpTarget`.

    - ``.pt`` / ``.pth``: a modelsteal bundle (``modelsteal train``), or a TorchScript module
      (``torch.jit.save``; pass ``input_shape``) that returns logits.
    - ``.pt2``: a ``torch.export`` program that returns logits (pass ``input_shape``).
    - ``.onnx``: run with onnxruntime.
    - ``.joblib`` / ``.pkl``: a fitted scikit-learn classifier. Unpickling runs code from the
      file: only open files you trust.
    """
    if isinstance(path, str) and path.startswith(("http://", "https://")):
        return _load_http(path, api_key=api_key, input_shape=input_shape)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {path}.")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InvalidParameterError(
            f"Cannot tell the model format of {path.name}: known suffixes are "
            f"{', '.join(sorted(SUFFIXES))}."
        )
    if kind == "onnx":
        return OnnxTarget(path, input_shape=input_shape)
    if kind == "export":
        import torch

        if input_shape is None:
            raise InvalidParameterError(
                f"{path} is a torch.export program: pass input_shape=(...) (one example's shape)."
            )
        module = torch.export.load(str(path)).module()
        return TorchTarget(module, input_shape=input_shape, batch_size=batch_size)
    if kind == "sklearn":
        import joblib

        return SklearnTarget(joblib.load(path), input_shape=input_shape)
    return _load_torch(path, input_shape=input_shape, batch_size=batch_size)


def _load_http(url: str, *, api_key: str | None, input_shape: Sequence[int] | None) -> HttpTarget:
    if not api_key:
        raise InvalidParameterError(
            f"{url} is a prediction server: pass api_key=... (--api-key on the command line)."
        )
    target = HttpTarget(url, api_key=api_key)
    if input_shape is not None and tuple(input_shape) != tuple(target.input_shape):
        target.close()
        raise InvalidParameterError(
            f"The server at {url} takes inputs of shape {tuple(target.input_shape)}, not "
            f"{tuple(input_shape)}; the data does not fit this model."
        )
    return target


def _load_torch(path: Path, *, input_shape: Sequence[int] | None, batch_size: int) -> TorchTarget:
    import torch

    from modelsteal.models import load_model
    from modelsteal.models._io import is_bundle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when it dispatches to TorchScript
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            obj = None
    if is_bundle(obj):
        model, info = load_model(path)
        if input_shape is not None and tuple(input_shape) != tuple(info.input_shape):
            raise InvalidParameterError(
                f"{path.name} takes inputs of shape {tuple(info.input_shape)}, not "
                f"{tuple(input_shape)}; the data does not fit this model."
            )
        return TorchTarget(
            model,
            input_shape=info.input_shape,
            n_classes=info.n_classes,
            batch_size=batch_size,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise InvalidParameterError(
            f"{path} is neither a modelsteal bundle nor a TorchScript module ({exc}). Save "
            "plain torch models with torch.jit.save(torch.jit.script(model), path)."
        ) from None
    if input_shape is None:
        raise InvalidParameterError(
            f"{path} is a TorchScript module: pass input_shape=(...) (one example's shape)."
        )
    return TorchTarget(module, input_shape=input_shape, batch_size=batch_size)
