"""Medical volumes: NIfTI or DICOM CT/MRI, geometry preserved voxel for voxel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segsuite.core.domain import DatasetFormat, Domain, ModelSpec, Sample
from segsuite.core.hookspecs import hookimpl

from .classes import ABDOMEN, LIVER, SPLEEN
from .io import read_nifti
from .pipeline import VolumePipeline  # light: the heavy work is imported when a job runs

# The shipped default: a small MONAI residual U-Net on 4.5 mm voxels (see sample_data/README.md).
DEFAULT_MODEL = ModelSpec("bnunet", {"channels": (16, 32, 64, 128)})
PATCH = (64, 64, 48)

# What `segsuite demo` runs: the shipped phantoms (sample_data/medical/imagesTr, two cases) through
# `segsuite run medical`, then `segsuite evaluate medical` against their labels (the MSD layout there).
SAMPLE = Sample(
    inputs=("imagesTr",),
    labels=".",
    note="segsuite run medical and segsuite evaluate medical on 2 synthetic CT-like phantoms (stored in random "
         "orientations with anisotropic voxels): each volume is reoriented, resampled to the model's spacing, "
         "segmented in 3D and mapped back to its own grid.",
)


def volume_dataset(*args: Any, **kwargs: Any) -> Any:
    """The training/evaluation dataset of NIfTI cases (see :func:`.dataset.volume_dataset`)."""
    from .dataset import volume_dataset as factory

    return factory(*args, **kwargs)


def detect(root: Path) -> bool:
    """Whether ``root`` is a medical dataset layout this domain reads (MSD/nnU-Net, paired folders, manifest)."""
    from .dataset import detect as is_volume_dataset

    return is_volume_dataset(root)


def case_pairs(root: Path) -> list:
    """The cases of ``root`` as ``(image, label, case)`` pairs, for ``segsuite split``."""
    from .dataset import case_pairs as pairs

    return pairs(root)


VOLUMES = DatasetFormat(build=volume_dataset, detect=detect, list_pairs=case_pairs)


def synthetic(folder: Path, seed: int = 0) -> Path:
    from .synthetic import synthetic as make

    return make(folder, seed)


def synthetic_dicom(folder: Path, seed: int = 0) -> Path:
    """``segsuite sample medical --format dicom``: phantom CT series (see :func:`.dicom_synthetic.make_dicom_sample`)."""
    from .dicom_synthetic import make_dicom_sample

    return make_dicom_sample(folder, seed)


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="medical",
            description="CT/MRI volumes in NIfTI or DICOM series; label volumes (NIfTI or DICOM SEG) on the input's "
                        "exact grid, volumes in mL",
            spatial_dims=3,
            in_channels=1,
            class_maps={"abdomen": ABDOMEN, "liver": LIVER, "spleen": SPLEEN},
            default_model=DEFAULT_MODEL,
            patch_size=PATCH,
            readers={".nii": read_nifti, ".nii.gz": read_nifti},
            dataset_formats={"msd": VOLUMES, "nifti-pairs": VOLUMES},
            synthetic=synthetic,
            sample_formats={"dicom": synthetic_dicom},
            outputs=("{case}_seg.nii.gz label volume on the input grid (--format dicom-seg: {case}_seg.dcm, a DICOM SEG)",
                     "{case}_seg.json volumes in mL",
                     "optional {case}_probabilities.nii.gz and {case}_uncertainty.nii.gz"),
            pipeline=VolumePipeline(),
            sample=SAMPLE,
        )
    ]
