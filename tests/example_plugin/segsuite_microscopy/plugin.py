"""Adds a `microscopy` domain and a `cells` command, using only segsuite's public API.

The domain's pipeline (pipeline.py) declares a run option of its own, `--min-cell-area`:
`segsuite run microscopy` gets it without any change in segsuite's CLI.

Only the hook marker is created here (no import of segsuite's plugin machinery), as
pluggy recommends: plugins depend on the marker, not on the host.
"""

import json
from pathlib import Path

import pluggy

hookimpl = pluggy.HookimplMarker("segsuite")


@hookimpl
def segsuite_domains():
    from segsuite.core.classmap import ClassMap
    from segsuite.core.data.images import read_image
    from segsuite.core.domain import Domain, ModelSpec

    from .pipeline import CellCountPipeline

    cells = ClassMap(names=("background", "cytoplasm", "nucleus"),
                     colors=((0, 0, 0), (0, 200, 0), (0, 0, 255)), name="cells")
    return [
        Domain(
            name="microscopy",
            description="Fluorescence microscopy: cells and nuclei",
            spatial_dims=2,
            in_channels=1,
            class_maps={"cells": cells},
            default_model=ModelSpec("unet", {"encoder": "resnet18"}),
            patch_size=(256, 256),
            readers={".tif": read_image, ".png": read_image},
            outputs=("label PNG", "JSON record with the cell count"),
            pipeline=CellCountPipeline(),
        )
    ]


@hookimpl
def segsuite_cli(app):
    import typer

    @app.command("cells")
    def cells(image: Path = typer.Argument(..., help="Microscopy image")) -> None:
        """Print the size and intensity range of a microscopy image."""
        from segsuite.core.data.images import read_image

        item = read_image(image)
        arr = item.array
        typer.echo(json.dumps({"shape": list(arr.shape), "min": int(arr.min()), "max": int(arr.max())}))
