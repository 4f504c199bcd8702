"""The spatial reference that travels with an image tensor.

Every reader returns an :class:`Item`: the array plus a :class:`SpatialRef` describing
where its pixels or voxels sit in the world. Writers restore the reference exactly, so a
label volume lines up with its scan voxel for voxel and a class raster drops onto its
GeoTIFF in a GIS. One typed object covers the three conventions the domains use:

* medical: a 4x4 voxel-to-world ``affine`` (NIfTI, RAS+ millimetres) plus header codes;
* geospatial: ``crs`` (WKT or EPSG string), a 6-coefficient ``transform`` (GDAL/affine
  order ``a, b, c, d, e, f``) and ``nodata``;
* plain images: an optional physical ``pixel_size`` (e.g. mm per pixel on a line camera).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class SpatialRef:
    """Where an array's samples are in the world.

    ``shape`` is the spatial shape (H, W) or (D, H, W)/(X, Y, Z) of the array as read,
    in the order the reader stores it; ``pixel_size`` follows the same axis order.
    """

    shape: tuple[int, ...]
    pixel_size: tuple[float, ...] | None = None
    affine: tuple[tuple[float, ...], ...] | None = None
    crs: str | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    nodata: float | None = None
    units: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.pixel_size is not None:
            ps = tuple(float(p) for p in self.pixel_size)
            if len(ps) != len(self.shape):
                raise ValueError(f"pixel_size {ps} does not match spatial shape {self.shape}")
            object.__setattr__(self, "pixel_size", ps)
        if self.affine is not None:
            a = np.asarray(self.affine, dtype=np.float64)
            if a.shape != (4, 4):
                raise ValueError(f"affine must be 4x4, got {a.shape}")
            object.__setattr__(self, "affine", tuple(tuple(float(v) for v in row) for row in a))
        if self.transform is not None:
            t = tuple(float(v) for v in self.transform)
            if len(t) != 6:
                raise ValueError(f"transform needs 6 coefficients, got {len(t)}")
            object.__setattr__(self, "transform", t)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_georeferenced(self) -> bool:
        return self.crs is not None or self.transform is not None

    def affine_array(self) -> np.ndarray | None:
        return None if self.affine is None else np.asarray(self.affine, dtype=np.float64)

    def sample_area(self) -> float | None:
        """Area (2D) or volume (3D) of one sample in ``units``² / ``units``³, when known."""
        if self.affine is not None:
            a = np.asarray(self.affine)[: self.ndim, : self.ndim]
            return float(abs(np.linalg.det(a)))
        if self.transform is not None and self.ndim == 2:
            a, b, _, d, e, _ = self.transform
            return float(abs(a * e - b * d))
        if self.pixel_size is not None:
            return float(np.prod(self.pixel_size))
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "pixel_size": None if self.pixel_size is None else list(self.pixel_size),
            "affine": None if self.affine is None else [list(r) for r in self.affine],
            "crs": self.crs,
            "transform": None if self.transform is None else list(self.transform),
            "nodata": self.nodata,
            "units": self.units,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SpatialRef":
        return cls(
            shape=tuple(d["shape"]),
            pixel_size=None if d.get("pixel_size") is None else tuple(d["pixel_size"]),
            affine=None if d.get("affine") is None else tuple(tuple(r) for r in d["affine"]),
            crs=d.get("crs"),
            transform=None if d.get("transform") is None else tuple(d["transform"]),  # type: ignore[arg-type]
            nodata=d.get("nodata"),
            units=d.get("units", ""),
            extra=dict(d.get("extra", {})),
        )


@dataclass
class Item:
    """One sample as read: channels-first ``array`` (NumPy or torch), its reference, metadata.

    ``array`` is ``(C, H, W)`` or ``(C, D, H, W)``; ``label`` is the matching label array
    without a channel axis when the reader found one; ``meta`` holds what the domain needs
    to write outputs (source path, case id, original dtype...).
    """

    array: Any
    spatial: SpatialRef
    meta: dict[str, Any] = field(default_factory=dict)
    label: Any = None
    source: Path | None = None

    @property
    def name(self) -> str:
        if "case" in self.meta:
            return str(self.meta["case"])
        if self.source is None:
            return "item"
        n = self.source.name
        for suffix in (".nii.gz", ".ome.tif"):
            if n.lower().endswith(suffix):
                return n[: -len(suffix)]
        return self.source.stem
