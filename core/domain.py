"""What a plugin contributes for one application domain.

A :class:`Domain` is plain data plus callables: class maps, the default model and patch
size, readers and writers keyed by file suffix, dataset formats, a synthetic sample
generator and a report function. The core never imports plugin code; it only calls
what a Domain hands it. Readers and writers should import their heavy libraries
(nibabel, rasterio, OpenCV) inside the function body, so that discovering plugins stays
cheap.
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
    from .report import ReportSection

Reader = Callable[[Path], Item]
"""Reads one input (file or folder) into an :class:`Item`."""
Writer = Callable[[Any, Item, Path], Path]
"""Writes a prediction (label array) for ``item`` to ``path``; returns the path written."""
DatasetFactory = Callable[..., Any]
"""Builds a dataset of ``{"image", "mask", "meta"}`` samples from a root folder."""
SyntheticGenerator = Callable[[Path, int], Path]
"""Writes deterministic sample data under a folder for a seed; returns the folder."""
Reporter = Callable[[Any, Item], dict]
"""Summarises a prediction for the domain's JSON report (volumes, areas, verdicts...)."""
Runner = Callable[..., list]
"""``runner(inputs, checkpoint, output, device=...) -> list of summaries``: what ``segsuite run DOMAIN``
does when the domain writes its own outputs (GeoTIFFs, NIfTI volumes...)."""

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
    writers: Mapping[str, Writer] = field(default_factory=dict)
    dataset_formats: Mapping[str, DatasetFactory] = field(default_factory=dict)
    synthetic: SyntheticGenerator | None = None
    report: Reporter | None = None
    outputs: tuple[str, ...] = ()
    """Human-readable list of what ``segsuite run`` writes for this domain."""
    runner: Runner | None = None
    """Optional: the domain's own ``segsuite run`` (default: the core's 2D image outputs)."""
    evaluator: Callable[..., dict] | None = None
    """Optional: ``evaluator(checkpoint, data, output, device=...) -> dict`` adding the domain's own
    metrics (and its own printout) to ``segsuite evaluate DOMAIN``."""
    demo: Callable[[Path, str], "ReportSection"] | None = None
    """Optional: ``demo(output, device) -> ReportSection``: run the domain's shipped sample data
    through its shipped model (its runner, plus an evaluation against the sample labels),
    writing everything under ``output``; ``segsuite demo`` puts the section in its HTML report.
    When the sample or model is not shipped it raises :class:`segsuite.core.demo.SampleMissing`
    (or lets ``default_checkpoint`` raise), and the demo lists the domain as skipped."""
    run_report: Callable[[list, Path | None, ClassMap, Path], "ReportSection"] | None = None
    """Optional: ``run_report(summaries, output, class_map, report_dir) -> ReportSection``: describes
    what ``runner`` returned and wrote to ``output`` (pictures it makes go to ``report_dir``);
    ``segsuite run DOMAIN --report DIR`` renders it."""

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
        for suffix in list(self.readers) + list(self.writers):
            if not suffix.startswith(".") and suffix != "/":
                raise DomainError(f"{where}: reader/writer key {suffix!r} must be a suffix like '.png' (or '/' for folders)")

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

    def writer_for(self, path: Path) -> Writer:
        return self._match(self.writers, Path(path), "writer")

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
            "writers": sorted(self.writers),
            "dataset_formats": sorted(self.dataset_formats),
            "synthetic": self.synthetic is not None,
            "outputs": list(self.outputs),
            "demo": self.demo is not None,
        }
