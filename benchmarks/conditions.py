"""What every benchmark script here prints besides its figures: the machine, how busy it was,
and ratios taken from interleaved repetitions.

A figure measured on a busy machine flatters every fixed overhead: contention slows the work
being compared against, and the overhead hides behind it (a Trainer/hand-loop ratio of 1.02
under load was 0.88 on the same code when quiet). So each script

- prints the machine (CPU model, cores, torch threads, GPU) and the load average before and
  after (:class:`Conditions`);
- measures how much CPU *other* processes used while it ran (from ``/proc/stat`` minus this
  process's own CPU time and its children's; the load average cannot tell the benchmark's own
  threads from anyone else's, and lags a minute behind) and prints a warning line when the
  machine was not quiet;
- takes ratios from interleaved repetitions, A B A B ..., reporting the median of the
  per-round ratios (:func:`interleave`, :func:`median_ratio`), so drift in machine speed hits
  both sides of a ratio alike.

Used as ``from conditions import Conditions, interleave, median_ratio`` by the scripts in this
folder (run as ``python benchmarks/bench_x.py``, so this folder is on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A quiet machine: before the run, a 1-minute load average under this share of the cores; during
# it, other processes using under BUSY_OTHERS of the machine's CPU time.
BUSY_LOAD_PER_CORE = 0.5
BUSY_OTHERS = 0.10


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare two runs of a benchmark."""
    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count() or 1, "python": platform.python_version()}
    if hasattr(os, "sched_getaffinity"):
        info["cores_usable"] = len(os.sched_getaffinity(0))
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _system_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux), or None elsewhere."""
    try:
        fields_ = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(v) for v in fields_]
    # user nice system idle iowait irq softirq steal [guest guest_nice, already inside user/nice]
    busy = ticks[0] + ticks[1] + ticks[2] + sum(ticks[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Conditions:
    """Context manager that prints the machine on entry and how busy it was on exit.

    ``others`` (set on exit) is the share of the machine's CPU time that processes other than
    this one and its waited-for children used during the block; ``quiet`` says whether both
    that and the load average before the run stayed under the thresholds above.
    """

    title: str = ""
    printer: Callable[[str], None] = print
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    others: float | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> "Conditions":
        self.info = machine()
        self.load_before = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        gpu = f", GPU {self.info['gpu']}" if "gpu" in self.info else ", no GPU"
        usable = self.info.get("cores_usable", self.info["cores"])
        self.printer(f"machine  {self.info['cpu']}, {self.info['cores']} cores ({usable} usable), "
                     f"torch {self.info.get('torch', '-')} with {self.info.get('torch_threads', '-')} threads{gpu}, "
                     f"Python {self.info['python']}")
        self.printer(f"load before  {_loads(self.load_before)}")
        self._busy0, self._own0, self._t0 = _system_busy_seconds(), _own_cpu_seconds(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._t0
        busy1 = _system_busy_seconds()
        if self._busy0 is not None and busy1 is not None and self.seconds >= 1:  # /proc/stat counts in 10 ms ticks
            own = _own_cpu_seconds() - self._own0
            others = max(0.0, (busy1 - self._busy0) - own)
            self.others = others / (self.seconds * self.cores)
        self.load_after = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        others_text = "unknown" if self.others is None else f"{self.others:.0%} of the machine's CPU"
        self.printer(f"load after  {_loads(self.load_after)}; other processes used {others_text} "
                     f"during the {self.seconds:.0f} s run")
        for line in self.warnings():
            self.printer(f"WARNING  {line}")

    @property
    def cores(self) -> int:
        return int(self.info.get("cores_usable", self.info.get("cores", 1)) or 1)

    def warnings(self) -> list[str]:
        """Why the figures above cannot be trusted as a quiet machine's, one line each.

        Where the CPU time of other processes during the run is known (Linux), it decides: the
        1-minute load average before a run still counts work that has just ended (the previous
        benchmark of a series), so on its own it would cry wolf. Elsewhere the load average is
        all there is.
        """
        out = []
        if self.others is None and self.load_before[0] > BUSY_LOAD_PER_CORE * self.cores:
            out.append(f"the machine was busy before the run (1-min load {self.load_before[0]:.2f} on "
                       f"{self.cores} cores, above {BUSY_LOAD_PER_CORE} per core): overheads are under-stated")
        if self.others is not None and self.others > BUSY_OTHERS:
            out.append(f"other processes used {self.others:.0%} of the CPU during the run (above "
                       f"{BUSY_OTHERS:.0%}): figures are not a quiet machine's")
        return out

    @property
    def quiet(self) -> bool:
        return not self.warnings()


def _loads(values: tuple[float, float, float]) -> str:
    return "{:.2f} {:.2f} {:.2f} (1/5/15 min)".format(*values)


def interleave(candidates: Mapping[str, Callable[[], float]], rounds: int, *, warmup: bool = True) -> dict[str, list[float]]:
    """Run every candidate once per round, in turn (A B A B ...), and collect what each returns.

    Each callable returns its own measurement (seconds, or a throughput), so it can leave its
    set-up out of the timing. With ``warmup`` every candidate runs once first, unrecorded
    (first-call allocations, lazy imports, caches).
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    if warmup:
        for fn in candidates.values():
            fn()
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            results[name].append(float(fn()))
    return results


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median of the per-round ratios ``numerators[i] / denominators[i]`` of an interleaved run."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError("ratios need the same, non-zero number of rounds on both sides")
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def spread(values: list[float]) -> str:
    """``median (min-max)`` of a list of measurements, for the printed lines."""
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"
