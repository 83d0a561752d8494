"""Server commands: ``serve`` and ``keys create|list|revoke`` (registered by the main CLI)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from modelsteal._cli_common import console, err_console, friendly, parse_params

keys_app = typer.Typer(help="API keys of a server's state file.", no_args_is_help=True)

StatePath = Annotated[
    Path, typer.Option("--state", help="The server's SQLite state file.", envvar="MODELSTEAL_STATE")
]


def _shape(text: str | None) -> tuple[int, ...] | None:
    from modelsteal.errors import InvalidParameterError

    if not text:
        return None
    try:
        return tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise InvalidParameterError(
            f"--input-shape takes comma-separated ints such as 1,28,28. Got {text!r} instead."
        ) from None


@friendly
def serve(
    model: Annotated[Path, typer.Option(help="Model file: .pt bundle, .onnx or .joblib/.pkl.")],
    state: StatePath,
    defense: Annotated[str, typer.Option(help="Defense name (see `list defenses`).")] = "none",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Defense parameter KEY=VALUE.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    centroid_state: Annotated[
        Path | None,
        typer.Option(help="SQLite file of a stateful defense (default: <state>.centroids.db)."),
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="One example's shape (e.g. 1,28,28) for plain model files.")
    ] = None,
    max_batch_rows: Annotated[int, typer.Option(help="Most rows per request.")] = 512,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 16 * 1024 * 1024,
    rate_limit: Annotated[
        float, typer.Option(help="Requests per second per key (0: no limit).")
    ] = 0.0,
    rate_burst: Annotated[int, typer.Option(help="Requests allowed in a burst.")] = 20,
    explain: Annotated[bool, typer.Option("--explain", help="Serve POST /v1/explain.")] = False,
    labels_only: Annotated[
        bool, typer.Option("--labels-only", help="Answer one-hot top-1 rows only.")
    ] = False,
    synchronous: Annotated[
        str,
        typer.Option(
            help="SQLite synchronous mode of the state file and the centroid file: FULL or NORMAL."
        ),
    ] = "FULL",
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve a model behind a defense over HTTP, with API keys, row quotas and durable state."""
    import uvicorn
    from pydantic import ValidationError

    from modelsteal.errors import InvalidParameterError
    from modelsteal.server.app import create_app
    from modelsteal.server.settings import Settings
    from modelsteal.workflows import resolve_params

    try:
        settings = Settings(
            model=model,
            state=state,
            defense=defense,
            defense_params=resolve_params(parse_params(param)),
            input_shape=_shape(input_shape),
            centroid_state=centroid_state,
            max_batch_rows=max_batch_rows,
            max_body_bytes=max_body_bytes,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            explain=explain,
            labels_only=labels_only,
            synchronous=synchronous.upper(),
        )
    except ValidationError as exc:
        raise InvalidParameterError(f"Invalid server settings: {exc}") from None
    app = create_app(settings)
    console.print(
        f"serving {model.name} behind [bold]{defense}[/] on http://{host}:{port} "
        f"(state {state}; docs at /docs)"
    )
    # One worker: the state file's recovery on start assumes one server process per file.
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)


def _store(state: Path):
    from modelsteal.server.store import StateStore

    return StateStore(state)


def _when(t: float | None) -> str:
    return "" if t is None else _dt.datetime.fromtimestamp(t).isoformat(timespec="seconds")


@keys_app.command("create")
@friendly
def keys_create(
    name: Annotated[str, typer.Option(help="Who the key is for.")],
    state: StatePath,
    quota: Annotated[
        int | None, typer.Option(help="Rows this key may query in all (default: no quota).")
    ] = None,
) -> None:
    """Create a key; its token is printed once and never stored."""
    from modelsteal.server.auth import create_key

    new = create_key(_store(state), name=name, quota=quota)
    quota_text = "no quota" if quota is None else f"quota {quota} rows"
    err_console.print(f"key {new.record.id} ({new.record.name}, {quota_text}); token:")
    console.print(new.token, highlight=False, soft_wrap=True)


@keys_app.command("list")
@friendly
def keys_list(state: StatePath) -> None:
    """Show every key with its quota and usage (never the tokens)."""
    table = Table(title=f"keys in {state}")
    for col in ("id", "name", "quota", "used", "answered", "requests", "created", "revoked"):
        table.add_column(col, justify="right" if col in ("quota", "used", "answered") else "left")
    for k in _store(state).list_keys():
        table.add_row(
            k.id,
            k.name,
            "-" if k.quota is None else str(k.quota),
            str(k.used),
            str(k.answered),
            str(k.requests),
            _when(k.created),
            _when(k.revoked),
        )
    console.print(table)


@keys_app.command("revoke")
@friendly
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id (or its name, if unique).")],
    state: StatePath,
) -> None:
    """Revoke a key: its requests get 403 from now on."""
    from modelsteal.server.auth import revoke_key

    record = revoke_key(_store(state), key)
    console.print(f"revoked {record.id} ({record.name})")
