"""Medical volumes: NIfTI CT/MRI, geometry preserved voxel for voxel."""

from __future__ import annotations

from typing import Any

from segsuite.core.domain import Domain, ModelSpec
from segsuite.core.hookspecs import hookimpl

from .classes import LIVER, SPLEEN
from .io import read_nifti


def run_volumes(inputs: list, checkpoint: Any, output: Any, *, device: str = "auto", keep_largest: bool | None = None,
                fill_holes: bool | None = None, min_volume: float | None = None) -> list:
    """``segsuite run medical``: label volume on the input's exact grid + volume report per case."""
    from .run import run_volumes as run

    return run(inputs, checkpoint, output, device=device, keep_largest=keep_largest, fill_holes=fill_holes,
               min_volume=min_volume)


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="medical",
            description="CT/MRI volumes in NIfTI; label volumes on the input's exact grid, volumes in mL",
            spatial_dims=3,
            in_channels=1,
            class_maps={"liver": LIVER, "spleen": SPLEEN},
            default_model=ModelSpec("unet3d"),
            patch_size=(96, 96, 96),
            readers={".nii": read_nifti, ".nii.gz": read_nifti},
            outputs=("{case}_seg.nii.gz label volume", "JSON report with volumes in mL"),
            runner=run_volumes,
        )
    ]
