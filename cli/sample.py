"""``segsuite sample``: write a domain's deterministic synthetic sample data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import domain, not_implemented


def sample(
    domain_name: Annotated[str, typer.Argument(metavar="DOMAIN", help="Domain whose generator to run")],
    output: Annotated[Path, typer.Option(help="Folder to write the sample data into")],
    seed: Annotated[int, typer.Option(help="Seed; the same seed writes the same files")] = 0,
) -> None:
    """Generate labelled sample data for a domain in a layout `segsuite train DOMAIN --data` reads."""
    dom = domain(domain_name)
    if dom.synthetic is None:
        raise not_implemented("sample", f"a sample-data generator for the {dom.name} domain")
    folder = dom.synthetic(output, seed)
    folder = Path(folder)
    images = [p for sub in ("images", "imagesTr") if (folder / sub).is_dir() for p in (folder / sub).iterdir()]
    typer.echo(f"wrote {len(images)} labelled sample(s) for {dom.name} to {folder}")
