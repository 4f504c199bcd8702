"""``segsuite models``: the architectures the registry can build."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import not_implemented


def models(
    pattern: Annotated[str, typer.Argument(help="Wildcard filter, e.g. 'deeplab*'")] = "*",
) -> None:
    """List registered architectures (core and plugins) with their spatial dimensions."""
    raise not_implemented("models", "the model registry")
