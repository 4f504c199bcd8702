"""``segsuite labels import``: bring COCO, LabelMe or colour-coded labels into index masks."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import require_path

app = typer.Typer(help="Label tools: import annotations made with other tools.", no_args_is_help=True)


class LabelFormat(str, Enum):
    coco = "coco"
    labelme = "labelme"
    color = "color"
    mvtec = "mvtec"


@app.command("import")
def import_(
    format: Annotated[LabelFormat, typer.Option("--format", help="coco (JSON), labelme (folder of JSON), color (RGB masks) or mvtec (MVTec AD folder)")],
    input: Annotated[Path, typer.Option("--input", "-i", help="COCO JSON, LabelMe folder/file, or colour-mask folder")],
    output: Annotated[Path, typer.Option(help="Folder for masks/, classes.json and manifest.csv")],
    images: Annotated[Optional[Path], typer.Option(help="Image folder (COCO and colour masks)")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Class-map JSON or comma-separated names (colour masks need a JSON with colours)")] = None,
    allow_problems: Annotated[bool, typer.Option(help="Exit 0 even when some annotations could not be converted")] = False,
) -> None:
    """Convert annotations to index masks plus a class map and a manifest ready for `segsuite train`.

    Every annotation that cannot be converted is listed with its file and entry; the command
    then exits with status 2 (unless --allow-problems), after writing what did convert.
    """
    from segsuite.core.classmap import ClassMap
    from segsuite.core.data import labels
    from segsuite.core.errors import SegsuiteError

    require_path(input, "annotations (--input)")
    _refuse_overwriting_sources(output, [input, images])
    class_map = None
    if classes is not None:
        class_map = ClassMap.from_json(classes) if classes.endswith(".json") else ClassMap.from_names(classes)
    if format is LabelFormat.coco:
        result = labels.import_coco(input, require_path(images, "image folder (--images)", kind="dir"), output, class_map=class_map)
    elif format is LabelFormat.mvtec:
        result = labels.import_mvtec(input, output)
    elif format is LabelFormat.labelme:
        result = labels.import_labelme(input, output, class_map=class_map)
    else:
        if class_map is None:
            raise SegsuiteError("colour masks need --classes CLASSES.json with the palette (names and colors)")
        result = labels.import_color_masks(input, require_path(images, "image folder (--images)", kind="dir"), output, class_map)
    paths = result.write(output)
    for problem in result.problems:
        typer.echo(f"segsuite: warning: {problem}", err=True)
    typer.echo(f"{len(result.pairs)} mask(s), {result.class_map.num_classes} classes ({', '.join(result.class_map.names)})")
    for label, path in paths.items():
        typer.echo(f"  {label:<9} {path}")
    if result.problems and not allow_problems:
        raise SegsuiteError(f"{len(result.problems)} annotation problem(s) in {input}; listed above and in {paths['problems']}")


def _refuse_overwriting_sources(output: Path, sources: list[Optional[Path]]) -> None:
    """The import writes OUTPUT/masks/*.png, classes.json, manifest.csv and problems.json: none of them
    may be (or hold) the annotations or images it reads."""
    from segsuite.core.errors import SegsuiteError
    from segsuite.core.jobs import refuse_overwrite

    given = [Path(s) for s in sources if s is not None]
    masks = (output / "masks").resolve()
    for src in given:
        resolved = src.resolve()
        if resolved == masks or masks in resolved.parents:
            raise SegsuiteError(f"{output}: the masks would be written into {src}, which this import reads; "
                                "choose another --output")
    refuse_overwrite(output, given)
    for name in ("classes.json", "manifest.csv", "problems.json"):
        refuse_overwrite(output / name, given)
