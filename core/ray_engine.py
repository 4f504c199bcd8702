"""The Ray engine: a job's per-input unit run in Ray actors, on a local or a remote cluster.

Why Ray Core actors and not Ray Data's ``map_batches``: the executor needs each input's result
as soon as it exists (the console line, the progress bar, the summary), a failure of one input
that fails only that input, and a killed worker's input retried once; actors give exactly that
(one call per input, ``max_task_retries=1``, restarted actors) while Ray Data streams blocks
of rows through its own operators, retries and fails whole blocks, and would add pyarrow to
the install. Each actor builds the pipeline from the job's :class:`PipelineRecipe` and loads
the model once; the driver hands it one planned input at a time, so a slow input never holds
back others queued behind it on the same actor.

Inputs and outputs are *paths*: every worker must see the same filesystem (one machine, or a
shared mount such as NFS). Nothing but paths, options and records crosses the network.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import time
import traceback as tb
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engines import EngineSettings, PipelineRecipe, SplitsInputs, require_ray
from .errors import SegsuiteError
from .jobs import InputResult, Job, PlannedInput, _stamp, error_line, one_line, run_unit
from .pipeline import RunContext
from .ray_cluster import connect, plan_workers
from .ray_parts import SplitInput, clean_worker_partials

POLL_S = 0.25
"""How long the driver blocks in ``ray.wait`` before Python's signal handlers get a turn."""


def _portable(exc: BaseException) -> BaseException:
    """``exc`` when it survives pickling (Ray sends it to the driver), else a SegsuiteError
    (user's errors) or RuntimeError (bugs) carrying its one-line text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any unpicklable exception is replaced by its text
        kind = SegsuiteError if isinstance(exc, SegsuiteError) else RuntimeError
        return kind(one_line(str(exc)) or type(exc).__name__)


class UnitWorker:
    """One Ray actor: the pipeline rebuilt and the model loaded once, then one input per call.

    The constructor never raises: a load problem is kept and returned by :meth:`ready` (and by
    every later call), so the driver reports it as the one line the local engine would."""

    def __init__(self, recipe: Any, checkpoint: Path, options: Mapping[str, Any], device: str,
                 output: Path | None, threads: int) -> None:
        self.messages: list[tuple[str, str, str, str, int]] = []
        self.error: BaseException | None = None
        self.pipeline: Any = None
        self.context: RunContext | None = None
        with self._capture():
            try:
                if threads:
                    with contextlib.suppress(ImportError):
                        import torch

                        torch.set_num_threads(threads)
                self.pipeline = recipe.build() if isinstance(recipe, PipelineRecipe) else recipe
                model = self.pipeline.load(checkpoint, options, device)
                self.context = RunContext(model=model, options=options, checkpoint=checkpoint, device=device,
                                          output=output, warn=lambda m: self.messages.append(("warn", m, "", "", 0)))
            except Exception as exc:  # noqa: BLE001 - reported by ready() on the driver
                self.error = _portable(exc)
                self.trace = tb.format_exc()

    @contextlib.contextmanager
    def _capture(self) -> Any:
        """Python warnings raised here go back to the driver with the result, to be shown there."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            category = w.category if w.category.__module__ == "builtins" else UserWarning
            self.messages.append(("python", str(w.message), category.__name__, str(w.filename), int(w.lineno)))

    def _take(self) -> list[tuple[str, str, str, str, int]]:
        taken, self.messages = self.messages, []
        return taken

    def ready(self) -> tuple[int, str, BaseException | None, list[Any]]:
        """``(pid, host, load error or None, warnings of the load)``."""
        return os.getpid(), socket.gethostname(), self.error, self._take()

    def run(self, item: PlannedInput) -> tuple[InputResult, list[Any], int]:
        """One planned input through :func:`segsuite.core.jobs.run_unit`."""
        if self.error is not None or self.context is None:
            result = InputResult(item.source, "failed", item.outputs, error=error_line(item.source, self.error or RuntimeError("no model")),
                                 traceback=getattr(self, "trace", None))
            return result, self._take(), os.getpid()
        with self._capture():
            result = run_unit(self.pipeline, item, self.context)
        return result, self._take(), os.getpid()

    def run_part(self, source: Path, part: Any) -> tuple[str, Any, str | None, list[Any], int]:
        """One part of a split input: ``("ok", result, None, ...)`` or ``("failed", error line, traceback, ...)``."""
        try:
            if self.error is not None or self.context is None:
                raise self.error or RuntimeError("no model")
            with self._capture():
                value = self.pipeline.run_part(part, self.context)
            return "ok", value, None, self._take(), os.getpid()
        except Exception as exc:  # noqa: BLE001 - one part failing fails its input, not the job
            return "failed", error_line(source, exc), tb.format_exc(), self._take(), os.getpid()

    def peak_rss_mb(self) -> float:
        """This worker's peak resident memory (what ``docs/cluster.md`` sizes workers by)."""
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class _Unit:
    item: PlannedInput
    part: int | None = None  # None: the whole input
    before: dict[str, Any] = field(default_factory=dict)  # its outputs' stamps when it was handed out


@dataclass
class _Worker:
    handle: Any
    pids: set[int] = field(default_factory=set)


class RayEngine:
    """Runs a job's inputs in Ray actors (see the module docstring); a :class:`~segsuite.core.jobs.Engine`."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.joined = False
        self.workers: list[_Worker] = []
        self.peak_rss_mb: list[float] = []
        """Each worker's peak resident memory, read when the job's inputs are done."""
        self._warn: Callable[[str], None] = lambda _m: None
        self._folders: set[Path] = set()

    # -- cluster -------------------------------------------------------------------------

    # -- Engine --------------------------------------------------------------------------

    def prepare(self, job: Job, warn: Callable[[str], None]) -> None:
        """Join (or start) the cluster, start the workers, and wait until each has loaded the model;
        a model problem is the same one-line error the local engine gives."""
        ray = require_ray()
        self._warn = warn
        self.joined = connect(ray, self.settings) or self.joined
        count, cpus = plan_workers(ray.nodes(), self.settings.workers, self.settings.gpus_per_worker)
        recipe = job.recipe if job.recipe is not None else job.pipeline
        remote = ray.remote(UnitWorker).options(
            num_cpus=cpus, num_gpus=self.settings.gpus_per_worker or None,
            max_restarts=-1, max_task_retries=1)  # a lost worker comes back; its input is tried once more
        try:
            handles = [remote.remote(recipe, job.checkpoint, dict(job.options), job.device, job.output, cpus)
                       for _ in range(count)]
        except Exception as exc:  # noqa: BLE001 - cloudpickle's errors vary with the object
            raise SegsuiteError(f"the {job.command} pipeline cannot be sent to Ray workers ({one_line(str(exc))[:200]}); "
                                "give the Job a PipelineRecipe (segsuite.core.engines)") from None
        self.workers = [_Worker(h) for h in handles]
        answers = ray.get([w.handle.ready.remote() for w in self.workers])
        for i, (pid, _host, error, messages) in enumerate(answers):
            self.workers[i].pids.add(pid)
            if i == 0:  # every worker loads the same model: its warnings once
                self._forward(messages)
            if error is not None:
                raise error

    def execute(self, job: Job, todo: Sequence[PlannedInput], done: Callable[[InputResult], None],
                progress: Callable[[int, int], None] | None) -> None:
        """Hand the inputs (or their parts) to idle workers; each result goes to ``done`` as it comes."""
        ray = require_ray()
        if not self.workers:
            self.prepare(job, lambda _m: None)
        self._folders = {p.parent for item in todo for p in item.outputs.values()}
        splits = self._split(job, todo)
        queue: deque[_Unit] = deque()
        for item in todo:
            split = splits.get(item.source)
            queue.extend([_Unit(item, i) for i in range(len(split.parts))] if split else [_Unit(item)])
        # the sub-progress of split inputs, in the parts' own units when they have them (a band's windows)
        weight = {(src, i): int(getattr(part, "windows", 1)) for src, s in splits.items() for i, part in enumerate(s.parts)}
        parts_total, parts_done = sum(weight.values()), 0
        idle = list(self.workers)
        pending: dict[Any, tuple[_Worker, _Unit, float]] = {}
        try:
            while queue or pending:
                while idle and queue:
                    unit, worker = queue.popleft(), idle.pop(0)
                    split = splits.get(unit.item.source)
                    if split is not None and not split.wanted(unit.part):  # another part of it failed
                        idle.insert(0, worker)
                        continue
                    if unit.part is None:
                        unit.before = {k: _stamp(p) for k, p in unit.item.outputs.items()}
                        ref = worker.handle.run.remote(unit.item)
                    else:
                        split.started(unit.part)
                        ref = worker.handle.run_part.remote(unit.item.source, split.parts[unit.part])
                    pending[ref] = (worker, unit, time.perf_counter())
                if not pending:
                    continue
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    worker, unit, t0 = pending.pop(ref)
                    idle.append(worker)
                    if unit.part is None:
                        done(self._whole_result(ray, ref, worker, unit.item, t0))
                        continue
                    split = splits[unit.item.source]
                    split.finished(unit.part, *self._part_outcome(ray, ref, worker, unit.item))
                    parts_done += weight[(unit.item.source, unit.part)]
                    if progress is not None and parts_total:
                        progress(parts_done, parts_total)
                    if split.complete:
                        done(split.result(job))
        except BaseException:
            self._stop(ray)
            self._clean_in_flight([u for _w, u, _t in pending.values()])
            raise
        finally:
            for split in splits.values():
                split.discard()
        self.peak_rss_mb = self._peak_rss(ray)

    def close(self) -> None:
        """Stop the workers (and the local cluster this job started)."""
        try:
            ray = require_ray()
        except SegsuiteError:
            return
        self._stop(ray)
        if self.joined and ray.is_initialized():
            ray.shutdown()
            self.joined = False

    # -- helpers -------------------------------------------------------------------------

    def _split(self, job: Job, todo: Sequence[PlannedInput]) -> dict[Path, SplitInput]:
        """The inputs a :class:`SplitsInputs` pipeline shares between workers."""
        pipeline = job.pipeline
        if not isinstance(pipeline, SplitsInputs):
            return {}
        n = len(self.workers)
        requested = self.settings.row_bands
        if requested is None and len(todo) >= n:  # enough inputs to keep every worker busy whole
            return {}
        splits = {}
        for item in todo:
            parts = pipeline.split(item, job.options, n, requested)
            if parts:
                context = RunContext(model=None, options=job.options, checkpoint=job.checkpoint, device=job.device,
                                     output=job.output, warn=self._warn)
                splits[item.source] = SplitInput(pipeline, item, list(parts), context)
        return splits

    def _forward(self, messages: Sequence[Any]) -> None:
        for kind, text, category, filename, lineno in messages:
            if kind == "warn":
                self._warn(text)
            else:
                cls = getattr(__import__("builtins"), category, UserWarning)
                warnings.warn_explicit(text, cls if isinstance(cls, type) and issubclass(cls, Warning) else UserWarning,
                                       filename, lineno)

    def _whole_result(self, ray: Any, ref: Any, worker: _Worker, item: PlannedInput, t0: float) -> InputResult:
        try:
            result, messages, pid = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a lost worker or a failed call fails this input only
            return InputResult(item.source, "failed", item.outputs, error=self._lost(item, exc),
                               traceback=one_line(str(exc)) + "\n", seconds=time.perf_counter() - t0)
        worker.pids.add(pid)
        self._forward(messages)
        return result

    def _part_outcome(self, ray: Any, ref: Any, worker: _Worker, item: PlannedInput) -> tuple[str, Any, str | None]:
        try:
            status, value, trace, messages, pid = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - as for a whole input
            return "failed", self._lost(item, exc), one_line(str(exc)) + "\n"
        worker.pids.add(pid)
        self._forward(messages)
        return status, value, trace

    def _lost(self, item: PlannedInput, exc: BaseException) -> str:
        ray = require_ray()
        if isinstance(exc, ray.exceptions.RayActorError):
            return (f"{item.source}: the worker running it died (also when it was tried again); "
                    "see docs/cluster.md (worker memory, node failures)")
        cause = getattr(exc, "cause", None)
        return error_line(item.source, cause if isinstance(cause, BaseException) else exc)

    def _stop(self, ray: Any) -> None:
        """Kill the workers, then remove the temporary files they (and killed predecessors) left."""
        for worker in self.workers:
            with contextlib.suppress(Exception):
                ray.kill(worker.handle, no_restart=True)
        if self.workers:
            clean_worker_partials(self._folders, {p for w in self.workers for p in w.pids})
        self.workers = []

    def _clean_in_flight(self, units: Sequence[_Unit]) -> None:
        """An interrupted job keeps no new file of the inputs that were running, as with the local
        engine (a split input writes its planned outputs only in the driver's join)."""
        for unit in units:
            if unit.part is not None:
                continue
            for key, path in unit.item.outputs.items():
                if key == "record" or _stamp(path) != unit.before.get(key):
                    with contextlib.suppress(OSError):
                        path.unlink()

    def _peak_rss(self, ray: Any) -> list[float]:
        try:
            return list(ray.get([w.handle.peak_rss_mb.remote() for w in self.workers], timeout=30))
        except Exception:  # noqa: BLE001 - a statistic only
            return []
