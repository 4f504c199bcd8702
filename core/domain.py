"""What a plugin contributes for one application domain: plain data plus one pipeline.

A :class:`Domain` is data: class maps, the default model and patch size, readers keyed by
file suffix, dataset formats, a synthetic sample generator, the shipped :class:`Sample`
and one :class:`~segsuite.core.pipeline.Pipeline`, the object that segments one input and
declares the run options it takes. Behaviour lives in typed objects, never in function
attributes or in flags the core CLI knows by name; optional capabilities are
``runtime_checkable`` protocols (:class:`~segsuite.core.pipeline.Evaluates`,
:class:`~segsuite.core.pipeline.Explains`) the core tests with ``isinstance``.

The core never imports plugin code; it only calls what a Domain hands it. Readers should
import their heavy libraries (nibabel, rasterio, OpenCV) inside the function body, so that
discovering plugins stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .classmap import ClassMap
from .errors import DomainError, InputFileError, UnknownNameError
from .spatial import Item

if TYPE_CHECKING:
    from .pipeline import Pipeline

Reader = Callable[[Path], Item]
"""Reads one input (file or folder) into an :class:`Item`."""
DatasetFactory = Callable[..., Any]
"""Builds a dataset of ``{"image", "mask", "meta"}`` samples from a root folder."""
SyntheticGenerator = Callable[[Path, int], Path]
"""Writes deterministic sample data under a folder for a seed; returns the folder."""


@dataclass(frozen=True)
class DatasetFormat:
    """A labelled-data layout a domain reads for ``train``/``evaluate``/``split``.

    ``build(root, ...)`` makes the dataset; ``detect(root)`` says whether a folder is in
    this layout (so ``--format`` can be left out); ``list_pairs(root)`` lists its
    ``(image, label)`` cases so that ``segsuite split`` can partition them.
    """

    build: DatasetFactory
    detect: Callable[[Path], bool] | None = None
    list_pairs: Callable[[Path], list] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.build(*args, **kwargs)


@dataclass(frozen=True)
class Sample:
    """The labelled sample a domain ships (in ``sample_data/<domain>/`` or ``root``), for ``segsuite demo``.

    ``inputs``: files, folders or globs relative to that folder, run through the domain's
    pipeline with ``options`` (the same code as ``segsuite run DOMAIN``); ``labels``: the
    labelled data its :class:`~segsuite.core.pipeline.Evaluates` scores the shipped model
    on (``None``: no evaluation); ``note``: one sentence on what the sample is.
    """

    inputs: tuple[str, ...]
    labels: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    root: Path | None = None
    """Where the sample and its model live (default: ``sample_data/<domain>/`` of the checkout, or of
    ``SEGSUITE_SAMPLE_DATA``); a separately installed plugin points it into its own package."""
    model: str = "model.safetensors"
    """The shipped model, relative to ``root``."""


_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class ModelSpec:
    """An architecture name from the model registry and its options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Domain:
    name: str
    description: str
    spatial_dims: Literal[2, 3]
    in_channels: int
    class_maps: Mapping[str, ClassMap]
    default_model: ModelSpec
    patch_size: tuple[int, ...]
    readers: Mapping[str, Reader] = field(default_factory=dict)
    dataset_formats: Mapping[str, DatasetFormat] = field(default_factory=dict)
    synthetic: SyntheticGenerator | None = None
    sample_formats: Mapping[str, SyntheticGenerator] = field(default_factory=dict)
    """Other layouts the sample generator writes, by name: ``segsuite sample DOMAIN --format NAME``
    (the medical domain's ``dicom``: DICOM series instead of NIfTI)."""
    outputs: tuple[str, ...] = ()
    """Human-readable list of what ``segsuite run`` writes for this domain."""
    pipeline: "Pipeline | None" = None
    """What ``segsuite run DOMAIN`` runs per input (``None``: the core's 2D image pipeline, with
    this domain's readers); its declared options become that command's options."""
    sample: Sample | None = None
    """The shipped sample ``segsuite demo`` runs through ``pipeline`` (``None``: no demo)."""

    def __post_init__(self) -> None:
        where = f"domain {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise DomainError(f"{where}: name must be lower-case letters, digits, '-' or '_'")
        if self.spatial_dims not in (2, 3):
            raise DomainError(f"{where}: spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        if not isinstance(self.in_channels, int) or self.in_channels < 1:
            raise DomainError(f"{where}: in_channels must be a positive integer")
        if not self.class_maps:
            raise DomainError(f"{where}: needs at least one class map")
        for key, cm in self.class_maps.items():
            if not isinstance(cm, ClassMap):
                raise DomainError(f"{where}: class map {key!r} is a {type(cm).__name__}, not a ClassMap")
        if not isinstance(self.default_model, ModelSpec):
            raise DomainError(f"{where}: default_model must be a ModelSpec")
        if len(self.patch_size) != self.spatial_dims:
            raise DomainError(f"{where}: patch_size {self.patch_size} has not {self.spatial_dims} sides")
        for suffix in self.readers:
            if not suffix.startswith(".") and suffix != "/":
                raise DomainError(f"{where}: reader key {suffix!r} must be a suffix like '.png' (or '/' for folders)")
        for key, fmt in self.dataset_formats.items():
            if not isinstance(fmt, DatasetFormat):
                raise DomainError(f"{where}: dataset format {key!r} is a {type(fmt).__name__}, not a DatasetFormat")
        if self.pipeline is not None:
            from .pipeline import Pipeline

            if not isinstance(self.pipeline, Pipeline):
                raise DomainError(f"{where}: pipeline {type(self.pipeline).__name__} lacks what a Pipeline needs "
                                  "(options, load, outputs, run_one, describe, report_section)")

    @property
    def class_map(self) -> ClassMap:
        """The default class map (the first one)."""
        return next(iter(self.class_maps.values()))

    def get_class_map(self, key: str | None) -> ClassMap:
        if key is None:
            return self.class_map
        try:
            return self.class_maps[key]
        except KeyError:
            raise UnknownNameError(
                f"domain {self.name!r} has no class map {key!r}; choose one of: {', '.join(self.class_maps)}"
            ) from None

    def _match(self, table: Mapping[str, Any], path: Path, what: str) -> Any:
        if path.is_dir() and "/" in table:
            return table["/"]
        lower = path.name.lower()
        for suffix in sorted(table, key=len, reverse=True):
            if suffix != "/" and lower.endswith(suffix.lower()):
                return table[suffix]
        known = ", ".join(s for s in table if s != "/") or "none"
        raise InputFileError(f"{path}: domain {self.name!r} has no {what} for this file type (known: {known})")

    def reader_for(self, path: Path) -> Reader:
        return self._match(self.readers, Path(path), "reader")

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description used by ``segsuite plugins``."""
        return {
            "name": self.name,
            "description": self.description,
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "class_maps": {k: list(cm.names) for k, cm in self.class_maps.items()},
            "default_model": {"name": self.default_model.name, "options": dict(self.default_model.options)},
            "patch_size": list(self.patch_size),
            "readers": sorted(self.readers),
            "dataset_formats": sorted(self.dataset_formats),
            "synthetic": self.synthetic is not None,
            "sample_formats": sorted(self.sample_formats),
            "outputs": list(self.outputs),
            "run_options": [o.flag for o in self.pipeline.options] if self.pipeline is not None else [],
            "demo": self.sample is not None,
        }
