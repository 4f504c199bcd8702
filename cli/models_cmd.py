"""``segsuite models``: the architectures the registry can build."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def models(
    pattern: Annotated[str, typer.Argument(help="Wildcard filter, e.g. 'deeplab*'")] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List registered architectures (core and plugins): name, dimensions, source library."""
    from segsuite.core.models.registry import list_models

    entries = list_models(pattern)
    if as_json:
        typer.echo(json.dumps([{"name": e.name, "spatial_dims": list(e.spatial_dims), "source": e.source,
                                "description": e.description} for e in entries], indent=2))
        return
    if not entries:
        typer.echo(f"no model matches {pattern!r}")
        raise typer.Exit(1)
    width = max(len(e.name) for e in entries)
    for e in entries:
        dims = "/".join(f"{d}D" for d in e.spatial_dims)
        typer.echo(f"{e.name:<{width}}  {dims:<5}  {e.source:<28}  {e.description}")
