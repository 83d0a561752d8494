"""What the command-line modules share: consoles, the error wrapper, KEY=VALUE parameters."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from modelsteal.errors import InvalidParameterError, ModelStealError

console = Console()
err_console = Console(stderr=True)


def friendly(fn: Callable) -> Callable:
    """Turn modelsteal's errors into one clear line and exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ModelStealError, FileNotFoundError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["hidden=[64,64]", "dropout=0.1"]`` → ``{"hidden": [64, 64], "dropout": 0.1}``."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidParameterError(f"Parameters are KEY=VALUE. Got {pair!r} instead.")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params
