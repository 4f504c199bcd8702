"""Book-keeping of the Ray engine for inputs split between workers, and cleaning up after
killed workers. Kept apart from :mod:`segsuite.core.ray_engine` so neither grows past a screenful
of concerns; nothing here imports Ray.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .engines import SplitsInputs
from .jobs import InputResult, Job, PlannedInput, run_unit
from .pipeline import RunContext
from .planning import process_alive

WAIT_FOR_EXIT_S = 5.0


class SplitInput:
    """One input shared between workers: its parts' states and results, then the driver's join
    (through :func:`segsuite.core.jobs.run_unit`, so a failed join cleans up as a failed input does)."""

    def __init__(self, pipeline: SplitsInputs, item: PlannedInput, parts: Sequence[Any], context: RunContext) -> None:
        self.pipeline = pipeline
        self.item = item
        self.parts = list(parts)
        self.context = context
        self.states = ["queued"] * len(self.parts)
        self.results: list[Any] = [None] * len(self.parts)
        self.failed: str | None = None
        self.trace: str | None = None
        self.t0: float | None = None

    def started(self, index: int) -> None:
        self.states[index] = "running"
        if self.t0 is None:
            self.t0 = time.perf_counter()

    def wanted(self, index: int) -> bool:
        """Whether part ``index`` still has to run (not once another part failed)."""
        return self.states[index] == "queued"

    def finished(self, index: int, status: str, value: Any, trace: str | None) -> None:
        if status == "ok":
            self.states[index], self.results[index] = "done", value
            return
        self.states[index] = "failed"
        if self.failed is None:  # the first failure is the input's; the rest of its parts need not run
            self.failed, self.trace = str(value), trace
            self.states = ["skipped" if s == "queued" else s for s in self.states]

    @property
    def complete(self) -> bool:
        return not any(s in ("queued", "running") for s in self.states)

    def result(self, job: Job) -> InputResult:
        """The input's result: a part's failure, or the join's outcome."""
        seconds = time.perf_counter() - (self.t0 or time.perf_counter())
        if self.failed is not None:
            record = self.item.outputs.get("record")
            if record is not None:  # as run_unit: a failed input keeps no record, so resuming reruns it
                with contextlib.suppress(OSError):
                    Path(record).unlink(missing_ok=True)
            self.discard()
            return InputResult(self.item.source, "failed", self.item.outputs, error=self.failed, traceback=self.trace,
                               seconds=seconds)
        try:
            result = run_unit(job.pipeline, self.item, self.context,
                              produce=lambda: self.pipeline.join(self.item, self.parts, self.results, self.context))
        finally:
            self.discard()
        result.seconds += seconds
        return result

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.pipeline.discard(self.parts)


def clean_worker_partials(folders: Iterable[Path], pids: Iterable[int]) -> list[Path]:
    """Remove the temporary files (``.NAME.partial-PID-...``) that the stopped workers ``pids``
    left in ``folders``. Workers on this machine are first given a moment to exit; on a shared
    filesystem the names alone say which worker wrote what."""
    pids = set(pids)
    deadline = time.monotonic() + WAIT_FOR_EXIT_S
    while any(process_alive(p) for p in pids if p != os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.05)
    removed = []
    for folder in {Path(f) for f in folders}:
        if not folder.is_dir():
            continue
        for pid in pids:
            for path in folder.glob(f".*.partial-{pid}-*"):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed
