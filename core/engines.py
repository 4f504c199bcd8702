"""Choosing the engine a job runs on, and what a pipeline gives a distributed engine.

The executor (:mod:`segsuite.core.jobs`) runs every batch command through an
:class:`~segsuite.core.jobs.Engine`: ``local`` (this process) or ``ray`` (Ray actors on a
local or remote cluster, :mod:`segsuite.core.ray_engine`). This module stays light (no Ray,
no torch): the CLI builds an :class:`EngineSettings` from ``--engine``, ``--address``,
``--workers``, ``--gpus-per-worker`` (and ``tile``'s ``--row-bands``) and calls
:func:`make_engine`.

A worker process cannot be handed the live pipeline a command built (it may hold lambdas,
open readers, a registry); it gets a :class:`PipelineRecipe` instead, an importable factory
plus plain arguments, and rebuilds the pipeline through the plugin registry itself.

A pipeline whose single inputs are big enough to share between workers implements
:class:`SplitsInputs` (the satellite tiler splits one scene into bands of window rows).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from .errors import SegsuiteError

if TYPE_CHECKING:
    from .jobs import Engine, PlannedInput
    from .pipeline import Pipeline, RunContext

EngineKind = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")
RAY_INSTALL = "pip install 'segsuite[ray]'"

ENGINE_HELP = {
    "engine": "local (this process) or ray (Ray actors on a cluster; see docs/cluster.md)",
    "address": "With --engine ray: the cluster to join: auto (the one this node is part of) or HEAD:6379 "
               "(default: RAY_ADDRESS, else a local cluster started for this job)",
    "workers": "With --engine ray: how many workers (each loads the model once) "
               "[default: one per CPU of the cluster]",
    "gpus_per_worker": "With --engine ray: GPUs each worker takes; fractions share a GPU (0.5: two workers per GPU) "
                       "[default: 0]",
    "row_bands": "With --engine ray: split each scene into this many bands of window rows, one worker each "
                 "(default: split only when there are fewer scenes than workers)",
}


@dataclass(frozen=True)
class EngineSettings:
    """Where and how a job runs; the CLI's engine options, checked."""

    kind: EngineKind = "local"
    address: str | None = None
    """A cluster address (``None``: ``RAY_ADDRESS``, else a local cluster started in-process)."""
    workers: int | None = None
    """Ray actors (``None``: one per CPU of the cluster, or per GPU share with ``gpus_per_worker``)."""
    gpus_per_worker: float = 0.0
    row_bands: int | None = None
    """Bands per scene for :class:`SplitsInputs` pipelines (``None``: the pipeline decides)."""
    ray_init: Mapping[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for ``ray.init`` when a local cluster is started (tests, benchmarks)."""

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise SegsuiteError(f"--engine {self.kind!r}: choose one of {', '.join(ENGINES)}")
        if self.kind == "local":
            for flag, value in (("--address", self.address), ("--workers", self.workers),
                                ("--gpus-per-worker", self.gpus_per_worker or None), ("--row-bands", self.row_bands)):
                if value is not None:
                    raise SegsuiteError(f"{flag} only applies to --engine ray; add --engine ray or leave {flag} out")
        if self.workers is not None and self.workers < 1:
            raise SegsuiteError(f"--workers {self.workers}: must be at least 1")
        if not 0 <= self.gpus_per_worker < 1e6 or self.gpus_per_worker != self.gpus_per_worker:
            raise SegsuiteError(f"--gpus-per-worker {self.gpus_per_worker}: must be 0 or more (0.5 shares a GPU between two workers)")
        if self.gpus_per_worker > 1 and self.gpus_per_worker != int(self.gpus_per_worker):
            raise SegsuiteError(f"--gpus-per-worker {self.gpus_per_worker}: above 1 it must be a whole number of GPUs")
        if self.row_bands is not None and self.row_bands < 1:
            raise SegsuiteError(f"--row-bands {self.row_bands}: must be at least 1 (1: never split a scene)")


def make_engine(settings: EngineSettings | None = None) -> "Engine":
    """The engine ``settings`` describe; ``--engine ray`` without Ray installed is a one-line error."""
    from .jobs import LocalEngine

    settings = settings or EngineSettings()
    if settings.kind == "local":
        return LocalEngine()
    require_ray()
    from .ray_engine import RayEngine

    return RayEngine(settings)


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SegsuiteError(f"--engine ray: Ray is not installed; install it with: {RAY_INSTALL}") from None
    return ray


@dataclass(frozen=True)
class PipelineRecipe:
    """How a worker rebuilds a job's pipeline: ``factory`` (``"package.module:callable"``) called
    with ``args`` (plain, picklable values: a domain's name, a class name). The factory builds the
    pipeline through the plugin registry, so a worker gets the same pipeline as the command did."""

    factory: str
    args: tuple[Any, ...] = ()

    def build(self) -> "Pipeline":
        module, _, name = self.factory.partition(":")
        target: Any = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
        return target(*self.args)


@runtime_checkable
class SplitsInputs(Protocol):
    """A pipeline that can share one big input between workers (a distributed engine asks; the
    local engine never does). The parts run on workers; the driver joins them into exactly the
    outputs and record :meth:`~segsuite.core.pipeline.Pipeline.run_one` would have written."""

    def split(self, item: "PlannedInput", options: Mapping[str, Any], workers: int,
              requested: int | None) -> Sequence[Any] | None:
        """The parts of ``item`` (picklable), or ``None`` to run it whole. ``requested`` is the
        user's part count (``None``: decide from ``workers``). Called on the driver, before
        any work; it only reads headers. A problem with the input returns ``None`` (the whole
        run then reports it as usual)."""
        ...

    def run_part(self, part: Any, context: "RunContext") -> Any:
        """On a worker: compute one part (writing its temporary files); a picklable result."""
        ...

    def join(self, item: "PlannedInput", parts: Sequence[Any], results: Sequence[Any],
             context: "RunContext") -> dict[str, Any]:
        """On the driver: write ``item``'s planned outputs from the parts' results and return
        its record. ``context.model`` is ``None`` here (the model lives on the workers)."""
        ...

    def discard(self, parts: Sequence[Any]) -> None:
        """Remove the parts' temporary files (after a join, a failure or an interruption)."""
        ...


def part_path(output: Path, driver_pid: int, index: int, what: str = "part") -> Path:
    """A hidden temporary file beside ``output`` for one part, named as
    :func:`segsuite.core.io.atomic_path` names its temporaries (with the *driver's* process id), so
    a run into the same folder removes what a killed driver left behind."""
    base = output.name.split(".")[0]
    return output.with_name(f".{base}.partial-{driver_pid}-{what}{index:04d}{''.join(output.suffixes) or '.tmp'}")
