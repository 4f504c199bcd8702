"""``segsuite sample``: write a domain's deterministic synthetic sample data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import domain, not_implemented


def sample(
    domain_name: Annotated[str, typer.Argument(metavar="DOMAIN", help="Domain whose generator to run")],
    output: Annotated[Path, typer.Option(help="Folder to write the sample data into")],
    seed: Annotated[int, typer.Option(help="Seed; the same seed writes the same files")] = 0,
    layout: Annotated[Optional[str], typer.Option(
        "--format", help="Another layout the domain's generator writes (e.g. medical: dicom)")] = None,
) -> None:
    """Generate labelled sample data for a domain in a layout `segsuite train DOMAIN --data` reads."""
    dom = domain(domain_name)
    if layout is not None:
        if layout not in dom.sample_formats:
            from segsuite.core.errors import SegsuiteError

            known = ", ".join(sorted(dom.sample_formats)) or "none besides the default"
            raise SegsuiteError(f"--format {layout!r}: the {dom.name} sample generator writes: {known}")
        generate = dom.sample_formats[layout]
    elif dom.synthetic is None:
        raise not_implemented("sample", f"a sample-data generator for the {dom.name} domain")
    else:
        generate = dom.synthetic
    folder = Path(generate(output, seed))
    typer.echo(f"wrote {written(dom, folder)} for {dom.name} to {folder}")


def written(dom: Any, folder: Path) -> str:
    """What the generator wrote, counted in the layout it wrote: the cases of a domain format
    that lists them (a Decathlon folder), else image/mask pairs (``images/`` + ``masks/``), else
    the files of the layout a domain format recognises (Cityscapes, CamVid: frames and labels)."""
    detected = [(name, fmt) for name, fmt in dom.dataset_formats.items() if fmt.detect is not None and fmt.detect(folder)]
    for _, fmt in detected:
        if fmt.list_pairs is not None:
            return f"{len(fmt.list_pairs(folder))} labelled sample(s)"
    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        from segsuite.core.data.datasets import scan_pairs

        return f"{len(scan_pairs(folder))} labelled sample(s)"
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    layout = f" ({detected[0][0]} layout: images and their labels)" if detected else ""
    return f"{files} file(s){layout}"
