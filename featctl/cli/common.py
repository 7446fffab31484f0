"""Options and rendering shared by the commands."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

StoreOption = typer.Option(None, "--store", envvar="FEATCTL_STORE",
                           help="Store folder (default ./featstore, or $FEATCTL_STORE).")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")
LockTimeoutOption = typer.Option(60.0, "--lock-timeout", help="Seconds to wait for another writer.")

console = Console(highlight=False)
if not console.is_terminal:  # pasted into files and READMEs: do not squeeze tables to 80 columns
    console = Console(highlight=False, width=160, soft_wrap=True)  # long paths stay on one line
err_console = Console(stderr=True, highlight=False)
if not err_console.is_terminal:  # warnings stay one line each in logs
    err_console = Console(stderr=True, highlight=False, width=160, soft_wrap=True)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
