"""``segsuite run``: predict on new inputs and write the domain's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import domain, expand_inputs, not_implemented


def run(
    domain_name: Annotated[str | None, typer.Argument(metavar="[DOMAIN]", help="Domain (default: from the checkpoint)")] = None,
    input: Annotated[str | None, typer.Option("--input", "-i", help="File, folder or glob")] = None,
    model: Annotated[Path | None, typer.Option(help="segsuite checkpoint (default: the domain's shipped model)")] = None,
    output: Annotated[Path | None, typer.Option(help="Output folder or file")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = "cpu",
) -> None:
    """Segment images or volumes and write labels, overlays and the domain's JSON report."""
    dom = domain(domain_name)
    if input is None:
        raise typer.BadParameter("--input is required")
    expand_inputs(input, tuple(dom.readers) if dom is not None else None)
    raise not_implemented("run", "prediction")
