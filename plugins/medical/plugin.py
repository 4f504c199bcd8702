"""Medical volumes: NIfTI CT/MRI, geometry preserved voxel for voxel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segsuite.core.domain import Domain, ModelSpec
from segsuite.core.hookspecs import hookimpl

from .classes import ABDOMEN, LIVER, SPLEEN
from .demo import demo, run_report  # light: numpy and the report model only
from .io import read_nifti

# The shipped default: a small MONAI residual U-Net on 4.5 mm voxels (see sample_data/README.md).
DEFAULT_MODEL = ModelSpec("unet3d", {"channels": (16, 32, 64, 128), "num_res_units": 1})
PATCH = (64, 64, 48)


def run_volumes(inputs: list, checkpoint: Any, output: Any, *, device: str = "auto", keep_largest: bool | None = None,
                fill_holes: bool | None = None, min_volume: float | None = None, probabilities: bool | None = None,
                tta: bool | None = None, fast: bool | None = None, uncertainty: str | None = None,
                explain: str | None = None, layer: str | None = None) -> list:
    """``segsuite run medical`` (label volume on the input's exact grid + volume report per case), and
    ``segsuite explain medical`` (``explain=CLASS``: a Grad-CAM volume per case)."""
    from .run import explain_volumes, run_volumes as run

    if explain is not None:
        return explain_volumes(inputs, checkpoint, output, explain, device=device, layer=layer)
    return run(inputs, checkpoint, output, device=device, keep_largest=keep_largest, fill_holes=fill_holes,
               min_volume=min_volume, probabilities=probabilities, tta=tta, fast=fast, uncertainty=uncertainty)


def evaluate_volumes(checkpoint: Path, data: Path, output: Path | None, *, device: str = "auto") -> dict:
    """``segsuite evaluate medical``: Dice, HD95, NSD and volume error per class on the original grids."""
    from .evaluate import evaluate_volumes as evaluate

    return evaluate(checkpoint, data, output, device=device)


def volume_dataset(*args: Any, **kwargs: Any) -> Any:
    from .dataset import volume_dataset as factory

    return factory(*args, **kwargs)


def _detect(root: Path) -> bool:
    from .dataset import detect

    return detect(root)


def _pairs(root: Path) -> list:
    from .dataset import case_pairs

    return case_pairs(root)


volume_dataset.detect = _detect  # type: ignore[attr-defined]
volume_dataset.pairs = _pairs  # type: ignore[attr-defined]  # lets `segsuite split` list the cases


def synthetic(folder: Path, seed: int = 0) -> Path:
    from .synthetic import synthetic as make

    return make(folder, seed)


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="medical",
            description="CT/MRI volumes in NIfTI; label volumes on the input's exact grid, volumes in mL",
            spatial_dims=3,
            in_channels=1,
            class_maps={"abdomen": ABDOMEN, "liver": LIVER, "spleen": SPLEEN},
            default_model=DEFAULT_MODEL,
            patch_size=PATCH,
            readers={".nii": read_nifti, ".nii.gz": read_nifti},
            dataset_formats={"msd": volume_dataset, "nifti-pairs": volume_dataset},
            synthetic=synthetic,
            outputs=("{case}_seg.nii.gz label volume on the input grid", "{case}_seg.json volumes in mL",
                     "optional {case}_probabilities.nii.gz and {case}_uncertainty.nii.gz"),
            runner=run_volumes,
            evaluator=evaluate_volumes,
            demo=demo,
            run_report=run_report,
        )
    ]
