"""Satellite scenes: GeoTIFF tiles, streamed, georeferenced output. Adds ``segsuite tile``."""

# No `from __future__ import annotations`: typer reads the annotations of the command
# defined inside segsuite_cli, and typer is only imported there.

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from segsuite.core.domain import Domain, ModelSpec
from segsuite.core.hookspecs import hookimpl

from .classes import LANDCOVER, WATER
from .io import read_geotiff

if TYPE_CHECKING:
    import typer


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="satellite",
            description="Multispectral GeoTIFF scenes; streamed tiling, georeferenced class rasters",
            spatial_dims=2,
            in_channels=3,
            class_maps={"landcover": LANDCOVER, "water": WATER},
            default_model=ModelSpec("unet", {"encoder": "resnet18"}),
            patch_size=(512, 512),
            readers={".tif": read_geotiff, ".tiff": read_geotiff},
            outputs=("class GeoTIFF with CRS, transform and colour table", "JSON area summary"),
        )
    ]


@hookimpl
def segsuite_cli(app: "typer.Typer") -> None:
    import typer

    from segsuite.core.errors import InputFileError, NotImplementedYet

    @app.command("tile")
    def tile(
        input: Annotated[Path, typer.Argument(help="GeoTIFF scene (or folder / glob of scenes)")],
        model: Annotated[Path | None, typer.Option(help="Checkpoint; the satellite default model when omitted")] = None,
        output: Annotated[Path | None, typer.Option(help="Output class GeoTIFF (default: INPUT_classes.tif)")] = None,
        tile_size: Annotated[int, typer.Option("--tile", help="Window side in pixels")] = 512,
        overlap: Annotated[int, typer.Option(help="Overlap between windows in pixels")] = 64,
    ) -> None:
        """Segment a GeoTIFF scene window by window into a seamless, georeferenced class raster.

        Streams block-aligned windows with rasterio (never the whole scene in memory), blends
        overlapping predictions so no seam shows, honours nodata, and writes a tiled,
        compressed GeoTIFF with the input's CRS, transform and a colour table.
        """
        if not input.exists() and not any(ch in str(input) for ch in "*?["):
            raise InputFileError(f"{input}: file not found")
        raise NotImplementedYet("segsuite tile: streamed GeoTIFF tiling is not implemented yet (satellite plugin, issue #5)")
