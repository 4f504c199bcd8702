"""Training data from NIfTI volumes (or DICOM series): the Decathlon / nnU-Net layout and plain paired folders.

Layouts:
- **MSD / nnU-Net v1**: ``ROOT/dataset.json`` whose ``training`` list pairs ``image`` and
  ``label`` paths (relative to ROOT), usually ``imagesTr/`` and ``labelsTr/``.
- **nnU-Net v2**: ``dataset.json`` without a ``training`` list; images are
  ``imagesTr/{case}_{XXXX}.nii.gz`` (one file per channel) and labels ``labelsTr/{case}.nii.gz``.
- **paired folders**: ``ROOT/images/*.nii[.gz]`` and ``ROOT/labels/`` (or ``masks/``) with the
  same file names; no naming convention is required. An image may be a folder holding one DICOM
  series (``images/case1/*``, label ``labels/case1.nii.gz``), in every layout.
- **manifests** written by ``segsuite split`` on any of these (CSV with image/mask/group), so
  train/val/test splits are grouped by case (or by patient with ``--group-by``).

Every label volume must be on its image's exact grid (shape and affine) and hold only ids
the class map knows; anything else is refused with a one-line error naming the file,
because a shifted or re-numbered label silently teaches the wrong thing.

Volumes are preprocessed once (reorientation to RAS, resampling to the target spacing,
intensity normalisation; see :mod:`.preprocess`) and kept in memory. Training samples are
random patches, a share of them (``foreground``, 1/3 by default as in nnU-Net) centred on a
random labelled voxel so small structures are seen often, with random mirroring along the
mirror axes and a small intensity scale/shift. Validation returns whole volumes on the
model grid.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsuite.core.classmap import ClassMap
from segsuite.core.errors import InputFileError

from .preprocess import Preprocessing, to_model_grid, voxel_sizes

NIFTI = (".nii.gz", ".nii")
SAMPLES_PER_VOLUME = 16


@dataclass(frozen=True)
class Case:
    name: str
    images: tuple[Path, ...]
    """One file per channel (nnU-Net v2), or a single 3D/4D file."""
    label: Path | None


def _is_nifti(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(NIFTI)


def _is_series_dir(p: Path) -> bool:
    """A folder whose first files (in name order) include a DICOM file: a case given as a DICOM series."""
    from .dicom import is_dicom_file

    if not p.is_dir():
        return False
    files = (f for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith("."))
    return any(is_dicom_file(f) for _, f in zip(range(8), files))


def _is_case_image(p: Path) -> bool:
    return _is_nifti(p) or _is_series_dir(p)


def _stem(p: Path) -> str:
    name = p.name
    for suffix in NIFTI:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.name if p.is_dir() else p.stem


def detect(root: Path) -> bool:
    root = Path(root)
    if root.is_file():  # a split manifest listing NIfTI volumes
        from segsuite.core.data.datasets import read_manifest

        try:
            pairs = read_manifest(root)
        except InputFileError:
            return False
        return bool(pairs) and (pairs[0].image.name.lower().endswith(NIFTI) or pairs[0].image.is_dir())
    if (root / "dataset.json").is_file():
        return True
    images = root / "images"
    return images.is_dir() and any(_is_case_image(p) for p in images.iterdir())


def scan_cases(root: str | Path, *, require_labels: bool = True) -> list[Case]:
    root = Path(root)
    if root.is_file():  # a manifest written by `segsuite split` (CSV or JSON with image/mask columns)
        from segsuite.core.data.datasets import read_manifest

        cases = [Case(_stem(p.image), _channels(p.image), p.mask) for p in read_manifest(root)]
        return _checked(cases, root, require_labels)
    if not root.is_dir():
        raise InputFileError(f"{root}: dataset folder not found")
    meta = root / "dataset.json"
    if meta.is_file():
        try:
            info = json.loads(meta.read_text())
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{meta}: not valid JSON ({exc})") from None
        if info.get("training"):
            cases = []
            for entry in info["training"]:
                image, label = _relative(root, entry, "image"), _relative(root, entry, "label")
                cases.append(Case(_stem(image), (image,), label))
        else:
            cases = _nnunet_v2(root, info)
    else:
        images = root / "images"
        if not images.is_dir():
            raise InputFileError(f"{root}: expected dataset.json (MSD/nnU-Net) or images/ and labels/ folders of NIfTI files")
        labels_dir = next((root / d for d in ("labels", "masks") if (root / d).is_dir()), None)
        cases = []
        for img in sorted(p for p in images.iterdir() if _is_case_image(p)):
            label = None
            if labels_dir is not None:
                label = next((labels_dir / (_stem(img) + s) for s in NIFTI if (labels_dir / (_stem(img) + s)).is_file()), None)
            cases.append(Case(_stem(img), (img,), label))
    return _checked(cases, root, require_labels)


def _checked(cases: list[Case], root: Path, require_labels: bool) -> list[Case]:
    if not cases:
        raise InputFileError(f"{root}: no NIfTI cases found")
    for case in cases:
        for p in case.images:
            if not p.is_file() and not _is_series_dir(p):
                raise InputFileError(f"{p}: image listed for case {case.name!r} does not exist")
        if require_labels and (case.label is None or not case.label.is_file()):
            raise InputFileError(f"{case.label or root}: no label volume for case {case.name!r}")
    return cases


def _channels(first: Path) -> tuple[Path, ...]:
    """An nnU-Net v2 channel file ``{case}_0000.nii.gz`` brings its sibling channels along."""
    m = re.match(r"^(?P<case>.+)_0000(?P<ext>\.nii(\.gz)?)$", first.name)
    if not m:
        return (first,)
    siblings = sorted(first.parent.glob(f"{m['case']}_[0-9][0-9][0-9][0-9]{m['ext']}"))
    return tuple(siblings) or (first,)


def case_pairs(root: str | Path) -> list[Any]:
    """The cases as core ``Pair`` objects (first image file, label, case id), for ``segsuite split``."""
    from segsuite.core.data.datasets import Pair

    return [Pair(c.images[0], c.label, c.name) for c in scan_cases(root)]


def _relative(root: Path, entry: Any, key: str) -> Path:
    if not isinstance(entry, dict) or key not in entry:
        raise InputFileError(f"{root / 'dataset.json'}: a training entry has no {key!r} path: {entry!r}")
    text = str(entry[key])
    return root / (text[2:] if text.startswith("./") else text)


def _nnunet_v2(root: Path, info: dict[str, Any]) -> list[Case]:
    ending = info.get("file_ending", ".nii.gz")
    pattern = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})" + re.escape(ending) + "$")
    grouped: dict[str, list[tuple[int, Path]]] = {}
    images = root / "imagesTr"
    if not images.is_dir():
        raise InputFileError(f"{root}: dataset.json lists no training cases and there is no imagesTr/ folder")
    for p in sorted(images.iterdir()):
        m = pattern.match(p.name)
        if m:
            grouped.setdefault(m["case"], []).append((int(m["ch"]), p))
    return [Case(name, tuple(p for _, p in sorted(files)), root / "labelsTr" / f"{name}{ending}")
            for name, files in sorted(grouped.items())]


def load_case(case: Case, classes: ClassMap | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(image (C, X, Y, Z) float32, labels (X, Y, Z) or None, affine)`` with the consistency checks:
    every file's header (:func:`.io.open_nifti`; a DICOM series folder: :func:`.dicom.open_series`),
    finite and varying intensities, labels on the image's grid with known integer ids (a label stored
    in another voxel order on the same grid, as dcm2niix writes a series, is brought to the image's)."""
    from .io import read_nifti
    from .run import check_intensities

    items = [read_image(p) for p in case.images]
    arrays = [it.array for it in items]
    affine = items[0].spatial.affine_array()
    for it in items[1:]:
        if it.array.shape[1:] != arrays[0].shape[1:] or not np.allclose(it.spatial.affine_array(), affine, atol=1e-3):
            raise InputFileError(f"{it.source}: channel file is not on the grid of {items[0].source.name}")
    image = np.concatenate(arrays).astype(np.float32)
    if not np.isfinite(image).all():
        raise InputFileError(f"{case.images[0]}: {int((~np.isfinite(image)).sum())} voxels are NaN or infinite")
    check_intensities(image, case.images[0])  # a blank case teaches (or scores) only the model's bias
    labels = None
    if case.label is not None:
        lab_item = read_nifti(case.label)
        lab = lab_item.array[0] if lab_item.array.shape[0] == 1 else np.moveaxis(lab_item.array, 0, -1)
        lab, lab_affine = same_grid_order(lab, lab_item.spatial.affine_array(), affine)
        if lab.shape != image.shape[1:]:
            raise InputFileError(f"{case.label}: label shape {lab.shape} differs from its image's {image.shape[1:]}")
        diff = float(np.abs(lab_affine - affine).max())
        if diff > 1e-3 * max(1.0, float(voxel_sizes(affine).min())):
            raise InputFileError(f"{case.label}: label affine differs from its image's (max difference {diff:.4g} mm); "
                                 "the label is not on the image's grid")
        if np.issubdtype(lab.dtype, np.floating):
            if not np.isfinite(lab).all() or not np.array_equal(lab, np.round(lab)):
                raise InputFileError(f"{case.label}: label volume holds non-integer values")
        labels = lab.astype(np.int64)
        if classes is not None:
            ids = np.unique(labels)
            bad = [int(v) for v in ids if (v < 0 or v >= classes.num_classes) and v != classes.ignore_index]
            if bad:
                raise InputFileError(f"{case.label}: class id(s) {bad[:5]} outside the class map "
                                     f"{classes.name or ''} (0..{classes.num_classes - 1}: {', '.join(classes.names)})")
    return image, labels, affine


def read_image(path: Path) -> Any:
    """A case image as an Item: a NIfTI file (:func:`.io.read_nifti`) or a folder holding one DICOM series."""
    from .inputs import is_nifti, open_case
    from .io import read_nifti
    from .memory import check_fits

    if is_nifti(path):
        return read_nifti(path)
    volume = open_case(path)
    check_fits(path, volume.memory_bytes(), f"reading its {'x'.join(map(str, volume.shape))} voxels")
    return volume.read()


def same_grid_order(labels: np.ndarray, label_affine: np.ndarray, image_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` in the image's voxel order when both describe the same grid with the axes permuted or
    reversed (dcm2niix stores a series with its rows flipped); otherwise unchanged, for the caller's checks."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    if labels.ndim != 3 or np.allclose(label_affine, image_affine, atol=1e-3):
        return labels, label_affine
    transform = ornt_transform(io_orientation(label_affine), io_orientation(image_affine))
    moved = apply_orientation(labels, transform)
    affine = label_affine @ inv_ornt_aff(transform, labels.shape)
    return np.ascontiguousarray(moved), affine


def median_spacing(cases: list[Case], orientation: str = "RAS") -> tuple[float, float, float]:
    """Per canonical axis, the median voxel size of the cases (nnU-Net's choice of target spacing)."""
    from .inputs import open_case
    from .preprocess import canonical_transform, canonical_voxel_sizes

    sizes = []
    for case in cases:
        affine = open_case(case.images[0]).affine  # the header only, checked as every reader checks it
        sizes.append(canonical_voxel_sizes(affine, canonical_transform(affine, orientation)))
    med = np.median(np.stack(sizes), axis=0)
    return tuple(round(float(s), 3) for s in med)


class VolumeDataset(torch.utils.data.Dataset):
    """Preprocessed volumes; random patches for training, whole volumes for validation.

    A 2D ``patch_size`` switches to slice mode: training samples are 2D patches of axial slices
    (of the RAS volume on the model grid), validation samples are whole axial slices, and
    ``spatial_dims`` is 2, so the trainer builds a 2D network. ``segsuite run medical`` then
    segments each volume slice by slice and stacks the result.
    """

    def __init__(self, cases: list[Case], classes: ClassMap, prep: Preprocessing, *, train: bool,
                 patch_size: tuple[int, ...] | None, augment: bool = True, foreground: float = 1 / 3,
                 samples_per_volume: int = SAMPLES_PER_VOLUME) -> None:
        self.cases, self.classes, self.normalization = cases, classes, prep
        self.train, self.augment, self.foreground = train, augment, foreground
        self.patch = tuple(int(p) for p in patch_size) if patch_size else None
        if self.patch is not None and len(self.patch) not in (2, 3):
            raise InputFileError(f"patch size {self.patch}: give X,Y,Z for 3D patches or X,Y for 2D slices")
        if train and self.patch is None:
            raise InputFileError("3D training needs a patch size (--patch-size X,Y,Z, or X,Y for 2D slices)")
        self.slices = self.patch is not None and len(self.patch) == 2
        self.spatial_dims = 2 if self.slices else 3
        self.samples_per_volume = samples_per_volume
        self.volumes: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.fg_index: list[torch.Tensor] = []
        for case in cases:
            image, labels, affine = load_case(case, classes)
            x, y, _ = to_model_grid(image, affine, prep, labels=labels)
            if self.patch is not None and train:
                x, y = _pad_to(x, y, self._patch3, classes.ignore_index)
            self.volumes.append((x, y))
            self.fg_index.append(torch.nonzero((y > 0) & (y != classes.ignore_index)) if train else torch.zeros(0, 3))
        # validation in slice mode: every axial slice of every volume is one sample
        self.slice_index = [(c, z) for c, (x, _) in enumerate(self.volumes) for z in range(x.shape[-1])] \
            if self.slices and not train else []

    @property
    def _patch3(self) -> tuple[int, ...]:
        assert self.patch is not None
        return (*self.patch, 1) if self.slices else self.patch

    def __len__(self) -> int:
        if self.train:
            return len(self.volumes) * self.samples_per_volume
        return len(self.slice_index) if self.slices else len(self.volumes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not self.train:
            case, z = self.slice_index[index] if self.slices else (index, None)
            x, y = self.volumes[case]
            meta = {"image": str(self.cases[case].images[0]), "case": self.cases[case].name, "group": self.cases[case].name}
            if z is None:
                return {"image": x, "mask": y, "meta": meta}
            return {"image": x[..., z], "mask": y[..., z], "meta": {**meta, "slice": z}}
        case = index % len(self.volumes)
        x, y = self.volumes[case]
        meta = {"image": str(self.cases[case].images[0]), "case": self.cases[case].name, "group": self.cases[case].name}
        size, patch = x.shape[1:], self._patch3
        fg = self.fg_index[case]
        if len(fg) and float(torch.rand(())) < self.foreground:
            centre = fg[int(torch.randint(len(fg), ()))]
            start = [min(max(int(c) - p // 2, 0), s - p) for c, p, s in zip(centre, patch, size)]
        else:
            start = [int(torch.randint(s - p + 1, ())) for p, s in zip(patch, size)]
        region = tuple(slice(s, s + p) for s, p in zip(start, patch))
        xi, yi = x[(slice(None), *region)], y[region]
        if self.slices:
            xi, yi = xi[..., 0], yi[..., 0]
        if self.augment:
            axes = [a for a in self.normalization.mirror_axes if a < yi.ndim and float(torch.rand(())) < 0.5]
            if axes:
                xi, yi = xi.flip([a + 1 for a in axes]), yi.flip(axes)
            scale = 1.0 + 0.1 * (2 * float(torch.rand(())) - 1)
            shift = 0.1 * (2 * float(torch.rand(())) - 1)
            xi = xi * scale + shift
        return {"image": xi.contiguous(), "mask": yi.contiguous(), "meta": meta}


def _pad_to(x: torch.Tensor, y: torch.Tensor, patch: tuple[int, ...], ignore: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch.nn.functional as F

    pads: list[int] = []
    for s, p in zip(reversed(x.shape[1:]), reversed(patch)):
        pads += [0, max(0, p - s)]
    if not any(pads):
        return x, y
    return F.pad(x[None], pads, mode="replicate")[0], F.pad(y, pads, value=ignore)


def volume_dataset(root: str | Path, classes: ClassMap, *, train: bool = True, patch_size: Any = None,
                   augment: bool = True, normalization: Any = None, **_: Any) -> VolumeDataset:
    """``Domain.dataset_formats`` factory for the medical domain (MSD/nnU-Net or paired NIfTI folders)."""
    cases = scan_cases(root)
    if isinstance(normalization, Preprocessing):
        prep = normalization
    elif isinstance(normalization, dict) and normalization.get("kind") == "volume":
        prep = Preprocessing.from_dict(normalization)
    else:  # training from scratch: target spacing from the data, CT window unless dataset.json says MRI
        slices = patch_size is not None and len(patch_size) == 2
        prep = Preprocessing(spacing=median_spacing(cases), intensity=_intensity_for(Path(root)),
                             mirror_axes=(0, 1) if slices else (0, 1, 2))
    return VolumeDataset(cases, classes, prep, train=train, patch_size=patch_size, augment=augment and train)


def _intensity_for(root: Path) -> str:
    meta = root / "dataset.json"
    if not meta.is_file():
        return "ct_window"
    info = json.loads(meta.read_text())
    modes = {str(v).upper() for v in (info.get("modality") or info.get("channel_names") or {}).values()}
    return "ct_window" if modes <= {"CT"} and modes else "zscore"
