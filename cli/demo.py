"""``segsuite demo``: the end-to-end main job on generated data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import not_implemented


def demo(
    output: Annotated[Path, typer.Option(help="Folder for the demo outputs and report")] = Path("segsuite-demo"),
) -> None:
    """Generate sample data, train, evaluate and run a model end to end; print a summary."""
    raise not_implemented("demo", "the demo")
