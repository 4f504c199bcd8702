"""The batch executor: every command that segments many inputs runs through :func:`run_job`.

One job = one pipeline, one checkpoint, a list of inputs, one set of options. In order:

1. **Expand** (:func:`expand_inputs`): a file, a folder (recursive, sorted, hidden files
   skipped) or a glob; directories matched by a glob are skipped; only the domain's suffixes;
   files segsuite wrote are never inputs (each output folder keeps a manifest of them,
   ``.segsuite-outputs.json``, written *before* any work, so even a killed run is covered).
2. **Plan** (:func:`plan_job`): every input's output paths are fixed up front. Two inputs
   with the same stem get distinct names deterministically: in sorted order the first keeps
   its stem, a later one uses its whole file name (``x.tif`` -> ``x_classes.tif``,
   ``x.tiff`` -> ``x.tiff_classes.tif``), then its path relative to the inputs' common
   folder. An output that resolves (through ``..`` or symlinks) to an input or to the
   checkpoint stops the job before anything is written.
3. **Run** each input through the engine (:class:`LocalEngine`: in this process, the model
   loaded once). Any exception from one input marks that input failed with one line on
   stderr (the traceback goes to ``segsuite.log`` in the job folder, and to the terminal
   with ``--debug``), removes the files that input had started, and the job goes on.
4. **Summarise**: ``summary.json`` and ``summary.csv`` in the job folder, one entry per
   input (ok / failed / skipped / not run, outputs, error, seconds), the same schema for every
   domain. Exit status 0 when every input succeeded, 2 when any failed.

``skip_existing`` skips inputs whose planned outputs all exist (resuming a long batch).
SIGINT and SIGTERM stop cleanly: the current input's partial files are removed, the summary
marks the remaining inputs "not run", and the exit status is 130 / 143. Temporary files
carry their writer's process id (:func:`segsuite.core.io.atomic_path`), so the next run into
a folder removes the ones a killed run left behind.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from .errors import InputFileError, SegsuiteError
from .pipeline import Pipeline, RunContext, Summarizes

MANIFEST = ".segsuite-outputs.json"
LOG_NAME = "segsuite.log"
Status = Literal["ok", "failed", "skipped", "not run"]


# -- inputs ---------------------------------------------------------------------------


def require_path(path: Path | None, what: str, *, kind: str = "any") -> Path:
    """``path`` when it exists (and is a file / a folder as ``kind`` says), else a one-line error."""
    if path is None:
        raise InputFileError(f"{what} is required")
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: {what} not found")
    if kind == "dir" and not path.is_dir():
        raise InputFileError(f"{path}: {what} must be a folder")
    if kind == "file" and not path.is_file():
        raise InputFileError(f"{path}: {what} must be a file")
    return path


def _hidden(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = (path.name,)
    return any(p.startswith(".") for p in parts)


def written_by_segsuite(folder: Path, _cache: dict[Path, frozenset[str]] | None = None) -> frozenset[str]:
    """Names of the files segsuite recorded as its outputs in ``folder`` (its manifest)."""
    if _cache is not None and folder in _cache:
        return _cache[folder]
    names: frozenset[str] = frozenset()
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            names = frozenset(json.loads(manifest.read_text()).get("files", []))
        except (ValueError, OSError, AttributeError):
            names = frozenset()
    if _cache is not None:
        _cache[folder] = names
    return names


def expand_inputs(spec: str | Path, suffixes: Sequence[str] | None = None) -> list[Path]:
    """A file, a folder (its files with ``suffixes``, in sub-folders too) or a glob -> sorted paths.

    Hidden files and folders, directories matched by a glob, and files segsuite wrote (listed
    in a folder's manifest) are left out. A single file is taken as it is (its reader says
    whether it can read it). Nothing found is a one-line error.
    """
    text = str(spec)
    path = Path(text)
    cache: dict[Path, frozenset[str]] = {}
    lowered = tuple(s.lower() for s in suffixes or ())
    if any(ch in text for ch in "*?["):
        found = [Path(p) for p in sorted(glob.glob(text, recursive=True))]
        found = [p for p in found if p.is_file() and not p.name.startswith(".")]
    elif path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
    elif path.exists():
        return [path]
    else:
        raise InputFileError(f"{path}: input not found")
    if lowered:
        found = [p for p in found if p.name.lower().endswith(lowered)]
    found = [p for p in found if p.name not in written_by_segsuite(p.parent, cache)]
    if not found:
        wanted = f" with suffix {', '.join(suffixes)}" if suffixes else ""
        raise InputFileError(f"{text}: no input files{wanted}")
    return found


def refuse_overwrite(output: Path, inputs: Sequence[Path], what: str = "input") -> None:
    """A one-line error when ``output`` is (resolves to) one of ``inputs``: no output overwrites an input."""
    target = Path(output).resolve()
    for src in inputs:
        if src is not None and Path(src).exists() and Path(src).resolve() == target:
            raise SegsuiteError(f"{output}: this output would overwrite the {what} {src}; choose another --output")


# -- planning -------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedInput:
    """One input and every path its run will write."""

    source: Path
    stem: str
    outputs: Mapping[str, Path]


@dataclass(frozen=True)
class Plan:
    inputs: list[PlannedInput]
    folder: Path
    """Where ``summary.json``, ``summary.csv`` and ``segsuite.log`` go."""
    single_file: bool = False


def _stem_candidates(pipeline: Pipeline, source: Path, base: Path) -> Iterator[str]:
    stem = pipeline.stem(source) if hasattr(pipeline, "stem") else source.stem
    yield stem
    yield source.name
    try:
        rel = source.relative_to(base)
    except ValueError:
        rel = Path(*source.parts[1:])
    flat = "__".join(rel.parts)
    yield flat
    n = 2
    while True:
        yield f"{flat}-{n}"
        n += 1


def _common_folder(paths: Sequence[Path]) -> Path:
    parents = [str(p.parent.resolve()) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path.cwd()


def plan_job(pipeline: Pipeline, inputs: Sequence[Path], output: Path | None, options: Mapping[str, Any],
             checkpoint: Path | None = None) -> Plan:
    """Fix every output path before any work; refuse collisions with inputs or the checkpoint."""
    if not inputs:
        raise InputFileError("no inputs")
    single_suffixes = tuple(s.lower() for s in getattr(pipeline, "single_file_suffixes", ()))
    names_file = output is not None and bool(single_suffixes) and str(output).lower().endswith(single_suffixes) \
        and not Path(output).is_dir()
    if names_file and len(inputs) > 1:
        raise SegsuiteError(f"{output}: several inputs need an output folder, not a file name")
    default = getattr(pipeline, "default_output", Path("segsuite-run"))
    base = _common_folder(inputs)
    protected = {Path(p).resolve(): Path(p) for p in inputs}
    if checkpoint is not None and Path(checkpoint).exists():
        protected.setdefault(Path(checkpoint).resolve(), Path(checkpoint))
    claimed: dict[Path, Path] = {}
    stems: set[tuple[Path, str]] = set()
    planned = []
    for src in inputs:
        src = Path(src)
        if names_file:
            folder = Path(output).parent
        elif output is not None:
            folder = Path(output)
        else:
            folder = Path(default) if default is not None else src.parent
        key = folder.resolve()
        stem = next(s for s in _stem_candidates(pipeline, src, base) if (key, s) not in stems)
        stems.add((key, stem))
        outs = {k: Path(p) for k, p in pipeline.outputs(src, stem, folder, options,
                                                           file=Path(output) if names_file else None).items()}
        for p in outs.values():
            resolved = p.resolve()
            if resolved in protected:
                what = "input" if protected[resolved] in inputs else "checkpoint"
                raise SegsuiteError(f"{p}: an output of {src.name} would overwrite the {what} {protected[resolved]}; "
                                    "choose another --output")
            if resolved in claimed:
                raise SegsuiteError(f"{claimed[resolved]} and {src} would both write {p}; rename one or run them separately")
            claimed[resolved] = src
        planned.append(PlannedInput(src, stem, outs))
    if names_file:
        folder = Path(output).parent
    elif output is not None:
        folder = Path(output)
    elif default is not None:
        folder = Path(default)
    else:
        folder = base
    return Plan(planned, folder, names_file)


def _record_outputs(plan: Plan, extra: Sequence[Path] = ()) -> None:
    """Add every planned output (and ``extra`` files) to the manifest of its folder."""
    record_written([p for item in plan.inputs for p in item.outputs.values()] + list(extra))


def add_to_manifest(folder: Path, names: Sequence[str] | set[str]) -> None:
    """Record files in ``folder`` as segsuite's outputs (never taken as inputs later)."""
    from .io import write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old = written_by_segsuite(folder)
    new = sorted(old | set(names))
    if new != sorted(old):
        write_json(folder / MANIFEST, {"written_by": "segsuite", "files": new})


def record_written(paths: Sequence[Path]) -> None:
    """Record files segsuite wrote outside a job's plan (a report's pages and pictures)."""
    by_folder: dict[Path, set[str]] = {}
    for p in paths:
        by_folder.setdefault(Path(p).parent, set()).add(Path(p).name)
    for folder, names in by_folder.items():
        add_to_manifest(folder, names)


def files_under(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.is_file()]


# -- running --------------------------------------------------------------------------


@dataclass
class InputResult:
    source: Path
    status: Status
    outputs: Mapping[str, Path] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"input": str(self.source), "status": self.status,
                "outputs": {k: str(p) for k, p in self.outputs.items()},
                "error": self.error, "seconds": round(self.seconds, 3)}


@dataclass
class Job:
    """Everything a run needs; engines get exactly this."""

    pipeline: Pipeline
    inputs: list[Path]
    checkpoint: Path
    output: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    device: str = "auto"
    skip_existing: bool = False
    command: str = "run"


@dataclass
class JobResult:
    results: list[InputResult]
    plan: Plan
    summary: Path
    exit_code: int
    interrupted: str | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records of the inputs that succeeded (or were skipped with a record), in input order."""
        return [r.record for r in self.results if r.record is not None and r.status in ("ok", "skipped")]

    @property
    def failed(self) -> list[InputResult]:
        return [r for r in self.results if r.status == "failed"]


class JobInterrupted(BaseException):
    """SIGTERM (or SIGINT) arrived: stop after cleaning the current input."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(source: Path, exc: BaseException) -> str:
    """One line naming the input and the problem; a bug (not a SegsuiteError/OSError) also names its type."""
    message = one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError) and not isinstance(exc, SegsuiteError) and getattr(exc, "strerror", None):
        message = one_line(exc.strerror) + (f" ({exc.filename})" if exc.filename else "")
    elif not isinstance(exc, (SegsuiteError, OSError)):
        message = f"{type(exc).__name__}: {message} (a bug: the traceback is in {LOG_NAME})"
    if str(source) not in message and source.name not in message:
        message = f"{source}: {message}"
    return message


def run_unit(pipeline: Pipeline, item: PlannedInput, context: RunContext) -> InputResult:
    """One input through ``pipeline``: the unit every engine executes. Never raises for the
    input's own errors; an interruption removes the input's new files and propagates."""
    from .io import write_json

    existed = {k: p.exists() for k, p in item.outputs.items()}
    t0 = time.perf_counter()

    def clean() -> None:
        for k, p in item.outputs.items():
            if not existed[k]:
                with _suppress_os():
                    p.unlink(missing_ok=True)

    try:
        for p in item.outputs.values():
            p.parent.mkdir(parents=True, exist_ok=True)
        record = dict(pipeline.run_one(item.source, item.outputs, context))
        record.setdefault("input", str(item.source))
        record["outputs"] = {k: str(p) for k, p in item.outputs.items()}
        if "record" in item.outputs:
            write_json(item.outputs["record"], record)
        return InputResult(item.source, "ok", item.outputs, record, seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - failure isolation is this function's job
        clean()
        return InputResult(item.source, "failed", item.outputs, None, error=error_line(item.source, exc),
                           traceback=traceback.format_exc(), seconds=time.perf_counter() - t0)
    except BaseException:
        clean()
        raise


@contextmanager
def _suppress_os() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


class Engine(Protocol):
    """Runs a job's planned inputs: ``prepare`` loads what every input needs (before any output
    folder is made, so a refused model leaves nothing behind), ``execute`` hands each result to
    ``done`` as it finishes."""

    def prepare(self, job: Job, warn: Callable[[str], None]) -> None: ...

    def execute(self, job: Job, todo: Sequence[PlannedInput], done: Callable[[InputResult], None],
                progress: Callable[[int, int], None] | None) -> None: ...


class LocalEngine:
    """In this process: the model is loaded once, inputs run one after another."""

    def __init__(self) -> None:
        self._context: RunContext | None = None

    def prepare(self, job: Job, warn: Callable[[str], None]) -> None:
        model = job.pipeline.load(job.checkpoint, job.options, job.device)
        self._context = RunContext(model=model, options=job.options, checkpoint=job.checkpoint, device=job.device,
                                   output=job.output, warn=warn)

    def execute(self, job: Job, todo: Sequence[PlannedInput], done: Callable[[InputResult], None],
                progress: Callable[[int, int], None] | None) -> None:
        if self._context is None:
            self.prepare(job, lambda _m: None)
        context = self._context
        context.progress = progress
        for item in todo:
            done(run_unit(job.pipeline, item, context))


def clean_stale_partials(folder: Path) -> list[Path]:
    """Remove temporary files (``.NAME.partial-PID-...``) of segsuite processes that no longer run."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(".*.partial-*"):
        pid = _partial_pid(p.name)
        if pid is not None and (pid == os.getpid() or _alive(pid)):
            continue
        with _suppress_os():
            p.unlink()
            removed.append(p)
    return removed


def _partial_pid(name: str) -> int | None:
    tail = name.split(".partial-", 1)[1]
    head = tail.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _complete(item: PlannedInput) -> bool:
    return all(p.is_file() and p.stat().st_size > 0 for p in item.outputs.values())


def _skipped(item: PlannedInput) -> InputResult:
    record = None
    path = item.outputs.get("record")
    if path is not None:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            record = None
    return InputResult(item.source, "skipped", item.outputs, record)


class JobConsole:
    """Where a job's lines go: results on stdout, problems on stderr, a progress bar in a terminal."""

    def __init__(self, quiet: bool = False, debug: bool = False) -> None:
        self.quiet = quiet
        self.debug = debug
        self._bar: Any = None

    def line(self, text: str) -> None:
        if not self.quiet:
            self._print(text, sys.stdout)

    def error(self, text: str) -> None:
        self._print(f"segsuite: error: {text}", sys.stderr)

    def warning(self, text: str) -> None:
        self._print(f"segsuite: warning: {one_line(text)}", sys.stderr)

    def _print(self, text: str, stream: Any) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=stream, flush=True)

    @contextmanager
    def progress(self, total: int, what: str) -> Iterator[tuple[Callable[[str], None], Callable[[int, int], None] | None]]:
        """``(advance(name), sub_progress)``: a rich bar on a terminal, nothing otherwise."""
        if self.quiet or not sys.stderr.isatty():
            yield (lambda _name: None), None
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            self._bar = bar
            task = bar.add_task(what, total=total)
            sub = bar.add_task("", total=None, visible=False)

            def advance(name: str) -> None:
                bar.update(task, advance=1, description=f"{what}: {name}")
                bar.update(sub, visible=False, completed=0, total=None)

            def sub_progress(done: int, of: int) -> None:
                bar.update(sub, visible=True, completed=done, total=of, description="  windows")

            try:
                yield advance, sub_progress
            finally:
                self._bar = None


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM raises :class:`JobInterrupted` in the main thread while a job runs (SIGINT already raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise JobInterrupted(signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_job(job: Job, *, console: JobConsole | None = None, engine: Engine | None = None,
            what: str = "segmenting") -> JobResult:
    """Plan, run, isolate failures, summarise. See the module docstring for the rules."""
    console = console or JobConsole()
    engine = engine or LocalEngine()
    plan = plan_job(job.pipeline, job.inputs, job.output, job.options, job.checkpoint)
    results: dict[Path, InputResult] = {}
    todo = []
    for item in plan.inputs:
        if job.skip_existing and _complete(item):
            results[item.source] = _skipped(item)
        else:
            todo.append(item)
    if todo:
        engine.prepare(job, console.warning)  # model problems stop the job before any folder is made
    folders = {p.parent for item in plan.inputs for p in item.outputs.values()} | {plan.folder}
    for folder in folders:
        Path(folder).mkdir(parents=True, exist_ok=True)
        clean_stale_partials(folder)
    summary_path = plan.folder / "summary.json"
    _record_outputs(plan, [summary_path, plan.folder / "summary.csv", plan.folder / LOG_NAME])

    if job.skip_existing and len(todo) < len(plan.inputs):
        console.line(f"skipping {len(plan.inputs) - len(todo)} input(s) whose outputs are complete (--skip-existing)")
    started = time.time()
    interrupted: str | None = None
    exit_code = 0
    log_path = plan.folder / LOG_NAME
    with console.progress(len(todo), what) as (advance, sub_progress):

        def done(result: InputResult) -> None:
            results[result.source] = result
            advance(result.source.name)
            if result.status == "ok":
                text = job.pipeline.describe(result.record or {})
                console.line(text if text else f"{result.source} ok")
                return
            console.error(result.error or f"{result.source}: failed")
            if result.traceback:
                _append_log(log_path, job, result)
                if console.debug:
                    print(result.traceback, file=sys.stderr, flush=True)

        try:
            with _signals_raise():
                if todo:
                    engine.execute(job, todo, done, sub_progress)
        except KeyboardInterrupt:
            interrupted, exit_code = "SIGINT", 130
        except JobInterrupted as exc:
            interrupted, exit_code = str(exc), 128 + exc.signum
    for item in plan.inputs:
        results.setdefault(item.source, InputResult(item.source, "not run", item.outputs))
    ordered = [results[item.source] for item in plan.inputs]
    _write_summary(summary_path, job, ordered, started, interrupted)
    failed = [r for r in ordered if r.status == "failed"]
    if isinstance(job.pipeline, Summarizes):
        records = [r.record for r in ordered if r.record is not None]
        if records:
            console.line(job.pipeline.summarize(records))
    if interrupted:
        left = sum(r.status == "not run" for r in ordered)
        console.error(f"interrupted ({interrupted}); {left} of {len(ordered)} input(s) not run; see {summary_path}")
    elif failed:
        exit_code = 2
        if len(ordered) > 1:
            console.error(f"{len(failed)} of {len(ordered)} failed; see {summary_path}")
    return JobResult(ordered, plan, summary_path, exit_code, interrupted)


def _append_log(path: Path, job: Job, result: InputResult) -> None:
    with _suppress_os():
        with open(path, "a") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} segsuite {job.command}: {result.source}\n")
            fh.write(result.traceback or "")


def _write_summary(path: Path, job: Job, results: Sequence[InputResult], started: float, interrupted: str | None) -> None:
    from . import __version__
    from .io import atomic_path, write_json

    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped", "not run")}
    write_json(path, {
        "command": f"segsuite {job.command}", "segsuite": __version__, "checkpoint": str(job.checkpoint),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in job.options.items()},
        "device": job.device, "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 3), "interrupted": interrupted, "counts": counts,
        "inputs": [r.to_dict() for r in results],
    })
    extra_rows = []
    for r in results:
        fields = {}
        if r.record is not None and isinstance(job.pipeline, Summarizes):
            fields = dict(job.pipeline.summary_fields(r.record))
        extra_rows.append(fields)
    extra_keys: list[str] = []
    for fields in extra_rows:
        extra_keys += [k for k in fields if k not in extra_keys]
    output_keys: list[str] = []
    for r in results:
        output_keys += [k for k in r.outputs if k not in output_keys]
    with atomic_path(path.with_suffix(".csv")) as tmp:
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["input", "status", "seconds", "error", *extra_keys, *output_keys])
            for r, fields in zip(results, extra_rows):
                w.writerow([str(r.source), r.status, round(r.seconds, 3), r.error or "",
                            *(fields.get(k, "") for k in extra_keys),
                            *(str(r.outputs[k]) if k in r.outputs else "" for k in output_keys)])
