"""Satellite scenes: GeoTIFF tiles, streamed, georeferenced output. Adds ``segsuite tile``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segsuite.core.domain import Domain, ModelSpec
from segsuite.core.hookspecs import hookimpl

from .classes import LANDCOVER, LOVEDA, WATER
from .demo import demo, run_report  # light: numpy and the report model only
from .io import read_geotiff
from .synthetic import generate

if TYPE_CHECKING:
    import typer


def geotiff_windows(*args: Any, **kwargs: Any) -> Any:
    """Aligned GeoTIFF image/mask pairs sampled as windows (``ROOT/images``, ``ROOT/masks``)."""
    from .dataset import geotiff_format  # torch and rasterio only when a dataset is built

    return geotiff_format(*args, **kwargs)


def _looks_like_geotiff_pairs(root: Path) -> bool:
    images = Path(root) / "images"
    return images.is_dir() and any(p.suffix.lower() in (".tif", ".tiff") for p in images.iterdir())


geotiff_windows.detect = _looks_like_geotiff_pairs  # type: ignore[attr-defined]


def run_scenes(inputs: list[Path], checkpoint: Path, output: Path | None, *, device: str = "auto",
               uncertainty: str | None = None) -> list[dict]:
    """``segsuite run satellite``: ``segsuite tile`` with its defaults, one summary per scene."""
    from segsuite.core.infer import Predictor

    from .commands import tile_scenes
    from .tiling import TileOptions

    options = TileOptions(uncertainty=uncertainty)
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    return list(tile_scenes(inputs, predictor, output, options, output_is_folder=True))


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="satellite",
            description="Multispectral GeoTIFF scenes; streamed tiling, georeferenced class rasters",
            spatial_dims=2,
            in_channels=4,
            class_maps={"landcover": LANDCOVER, "loveda": LOVEDA, "water": WATER},
            default_model=ModelSpec("resunet", {"channels": [16, 32, 64, 128], "num_res_units": 1}),
            patch_size=(128, 128),
            readers={".tif": read_geotiff, ".tiff": read_geotiff},
            dataset_formats={"geotiff": geotiff_windows},
            synthetic=generate,
            outputs=("class GeoTIFF with CRS, transform and colour table", "JSON area summary"),
            runner=run_scenes,
            demo=demo,
            run_report=run_report,
        )
    ]


@hookimpl
def segsuite_cli(app: "typer.Typer") -> None:
    from . import commands

    app.command("tile")(commands.tile)
    app.command("stats")(commands.stats)
