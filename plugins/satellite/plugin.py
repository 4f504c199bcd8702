"""Satellite scenes: GeoTIFF tiles, streamed, georeferenced output. Adds ``segsuite tile`` and ``segsuite stats``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segsuite.core.domain import DatasetFormat, Domain, ModelSpec, Sample
from segsuite.core.hookspecs import hookimpl

from .classes import LANDCOVER, LOVEDA, WATER
from .io import read_geotiff
from .pipeline import SAMPLE_WINDOWS, SCENE_SUFFIXES, TilingPipeline  # light: no rasterio, no torch
from .synthetic import generate

if TYPE_CHECKING:
    import typer


def geotiff_windows(*args: Any, **kwargs: Any) -> Any:
    """Aligned GeoTIFF image/mask pairs sampled as windows (``ROOT/images``, ``ROOT/masks``)."""
    from .dataset import geotiff_format  # torch and rasterio only when a dataset is built

    return geotiff_format(*args, **kwargs)


def _looks_like_geotiff_pairs(root: Path) -> bool:
    images = Path(root) / "images"
    return images.is_dir() and any(p.suffix.lower() in SCENE_SUFFIXES for p in images.iterdir())


SAMPLE = Sample(
    inputs=("scene.tif",),
    labels="scene.tif",  # scored against scene_labels.tif beside it
    options=SAMPLE_WINDOWS,
    note=(f"segsuite tile scene.tif --tile {SAMPLE_WINDOWS['tile']} --overlap {SAMPLE_WINDOWS['overlap']}: the scene is "
          "processed in overlapping windows blended with a Gaussian weight, so no seam shows; the class raster keeps "
          "the scene's CRS, transform and nodata."),
)


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="satellite",
            description="Multispectral GeoTIFF scenes; streamed tiling, georeferenced class rasters",
            spatial_dims=2,
            in_channels=4,
            class_maps={"landcover": LANDCOVER, "loveda": LOVEDA, "water": WATER},
            default_model=ModelSpec("bnunet", {"channels": [16, 32, 64, 128]}),
            patch_size=(128, 128),
            readers={".tif": read_geotiff, ".tiff": read_geotiff},
            dataset_formats={"geotiff": DatasetFormat(build=geotiff_windows, detect=_looks_like_geotiff_pairs)},
            synthetic=generate,
            outputs=("class GeoTIFF with CRS, transform and colour table", "JSON area summary",
                     "with options: probabilities, uncertainty, polygons"),
            pipeline=TilingPipeline(),
            sample=SAMPLE,
        )
    ]


@hookimpl
def segsuite_cli(app: "typer.Typer") -> None:
    from . import commands

    app.command("tile")(commands.tile)
    app.command("stats")(commands.stats)
