"""The batch executor: every command that segments many inputs runs through :func:`run_job`.

One job = one pipeline, one checkpoint, a list of inputs, one set of options. In order:

Expanding and planning live in :mod:`segsuite.core.planning` (re-exported here).

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
   loaded once; :class:`segsuite.core.ray_engine.RayEngine`: in Ray actors that each load it
   once, chosen with :func:`segsuite.core.engines.make_engine`). Any exception from one input marks that input failed with one line on
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
import json
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

from .errors import SegsuiteError
from .pipeline import Pipeline, RunContext, Summarizes
from .planning import (JOB_FILES, MANIFEST, Plan, PlannedInput, add_to_manifest, clean_stale_partials, expand_inputs,
                       files_under, plan_job, record_written, refuse_overwrite, require_path, written_by_segsuite)

__all__ = ["MANIFEST", "Engine", "InputResult", "Interrupted", "Job", "JobConsole", "JobInterrupted", "JobResult", "LocalEngine", "Plan",
           "PlannedInput", "add_to_manifest", "clean_stale_partials", "expand_inputs", "files_under", "plan_job",
           "record_written", "refuse_overwrite", "require_path", "run_and_report", "run_job", "run_unit",
           "written_by_segsuite"]

LOG_NAME = JOB_FILES[2]
Status = Literal["ok", "failed", "skipped", "not run"]


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
    recipe: Any = None
    """How a worker process rebuilds ``pipeline`` (a :class:`segsuite.core.engines.PipelineRecipe`);
    ``None``: engines that need one send the pipeline object itself (it must pickle)."""


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


class Interrupted(SegsuiteError):
    """A job stopped by SIGINT/SIGTERM before it ran any input (exit status 130 / 143)."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(source: Path, exc: BaseException) -> str:
    """One line naming the input and the problem; a bug (not a SegsuiteError/OSError) also names its type."""
    message = one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError) and not isinstance(exc, SegsuiteError) and getattr(exc, "strerror", None):
        message = (f"{exc.filename}: " if exc.filename else "") + one_line(exc.strerror)
    elif not isinstance(exc, (SegsuiteError, OSError)):
        message = f"{type(exc).__name__}: {message} (a bug: the traceback is in {LOG_NAME})"
    if str(source) not in message and source.name not in message:
        message = f"{source}: {message}"
    return message


def run_unit(pipeline: Pipeline, item: PlannedInput, context: RunContext,
             produce: Callable[[], Mapping[str, Any]] | None = None) -> InputResult:
    """One input through ``pipeline``: the unit every engine executes. Never raises for the
    input's own errors; an interruption removes the input's new files and propagates.
    ``produce`` writes the outputs and returns the record in place of ``pipeline.run_one``
    (a distributed engine joining an input's parts)."""
    from .io import write_json

    before = {k: _stamp(p) for k, p in item.outputs.items()}
    t0 = time.perf_counter()

    def clean() -> None:
        # A failed input leaves none of its new or rewritten files (no half-old, half-new set), and
        # no record, so that --skip-existing never takes it as complete.
        for k, p in item.outputs.items():
            if k == "record" or _stamp(p) != before[k]:
                with _suppress_os():
                    p.unlink(missing_ok=True)

    try:
        for p in item.outputs.values():
            p.parent.mkdir(parents=True, exist_ok=True)
        record = dict(produce() if produce is not None else pipeline.run_one(item.source, item.outputs, context))
        record.setdefault("input", str(item.source))
        record["outputs"] = {k: str(p) for k, p in item.outputs.items()}
        record["job_options"] = _jsonable_options(context.options)
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


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _jsonable_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}


@contextmanager
def _suppress_os() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


class Engine(Protocol):
    """Runs a job's planned inputs: ``prepare`` loads what every input needs (before any output
    folder is made, so a refused model leaves nothing behind), ``execute`` hands each result to
    ``done`` as it finishes, ``close`` releases what ``prepare`` took (always called, also after
    an error or an interruption)."""

    def prepare(self, job: Job, warn: Callable[[str], None]) -> None: ...

    def execute(self, job: Job, todo: Sequence[PlannedInput], done: Callable[[InputResult], None],
                progress: Callable[[int, int], None] | None) -> None: ...

    def close(self) -> None: ...


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

    def close(self) -> None:
        self._context = None  # the model goes with it


def _read_record(item: PlannedInput) -> dict[str, Any] | None:
    path = item.outputs.get("record")
    if path is None:
        return None
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _complete(item: PlannedInput, options: Mapping[str, Any]) -> bool:
    """Every planned output is there and, when the pipeline has a record, it says it was made from
    this very input with these options (so a changed option or another input's files never count)."""
    if not all(p.is_file() and p.stat().st_size > 0 for p in item.outputs.values()):
        return False
    if "record" not in item.outputs:
        return True
    record = _read_record(item)
    if record is None or "input" not in record:
        return False
    try:
        same_input = Path(record["input"]).resolve() == item.source.resolve()
    except (OSError, TypeError, ValueError):
        return False
    return same_input and record.get("job_options") == json.loads(json.dumps(_jsonable_options(options)))


def _skipped(item: PlannedInput) -> InputResult:
    return InputResult(item.source, "skipped", item.outputs, _read_record(item))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


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
        # Above a live progress bar only when the line goes to the terminal the bar is drawn on;
        # results redirected to a file still go to that file.
        if self._bar is not None and (stream is sys.stderr or _isatty(stream)):
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
                      console=Console(stderr=True), transient=True, redirect_stdout=False,
                      redirect_stderr=False) as bar:
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
    """Plan, run, isolate failures, summarise. See the module docstring for the rules.
    ``engine`` (default: :class:`LocalEngine`) is closed when the job ends, however it ends."""
    console = console or JobConsole()
    engine = engine or LocalEngine()
    try:
        return _run_job(job, console, engine, what)
    finally:
        close = getattr(engine, "close", None)  # an engine written before close() existed has nothing to release
        if close is not None:
            close()


def _run_job(job: Job, console: JobConsole, engine: Engine, what: str) -> JobResult:
    plan = plan_job(job.pipeline, job.inputs, job.output, job.options, job.checkpoint)
    results: dict[Path, InputResult] = {}
    todo = []
    for item in plan.inputs:
        if job.skip_existing and _complete(item, job.options):
            results[item.source] = _skipped(item)
        else:
            todo.append(item)
    if todo:
        try:
            with _signals_raise():
                engine.prepare(job, console.warning)  # model problems stop the job before any folder is made
        except KeyboardInterrupt:
            raise Interrupted("interrupted (SIGINT) while loading the model; nothing was written") from None
        except JobInterrupted as exc:
            raise Interrupted(f"interrupted ({exc}) while loading the model; nothing was written", exc.signum) from None
    folders = {p.parent for item in plan.inputs for p in item.outputs.values()} | {plan.folder}
    for folder in folders:
        Path(folder).mkdir(parents=True, exist_ok=True)
        clean_stale_partials(folder)
    summary_path = plan.folder / "summary.json"
    record_written([p for item in plan.inputs for p in item.outputs.values()]
                   + [summary_path, plan.folder / "summary.csv", plan.folder / LOG_NAME])

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
                try:
                    text = job.pipeline.describe(result.record or {})
                except Exception as exc:  # noqa: BLE001 - a faulty console line must not end the batch
                    text = f"{result.source}: ok"
                    console.warning(f"{result.source}: the pipeline could not describe its result ({error_line(result.source, exc)})")
                console.line(text if text else f"{result.source}: ok")
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
            try:
                console.line(job.pipeline.summarize(records))
            except Exception as exc:  # noqa: BLE001 - every result is already written and summarised
                console.warning(f"the {job.command} summary line failed: {one_line(str(exc))}")
    if interrupted:
        left = sum(r.status == "not run" for r in ordered)
        console.error(f"interrupted ({interrupted}); {left} of {len(ordered)} input(s) not run; see {summary_path}")
    elif failed:
        exit_code = 2
        if len(ordered) > 1:
            console.error(f"{len(failed)} of {len(ordered)} failed; see {summary_path}")
    return JobResult(ordered, plan, summary_path, exit_code, interrupted)


def run_and_report(job: Job, *, report: Path | None = None, class_map: Any = None, title: str = "",
                   console: JobConsole | None = None, what: str = "segmenting", engine: Engine | None = None) -> JobResult:
    """:func:`run_job`, then the closing line and ``--report``'s page (the pipeline's section);
    what every batch command does. The caller exits with ``result.exit_code``."""
    console = console or JobConsole()
    if report is not None:
        from .report import check_report_folder

        check_report_folder(report)
    result = run_job(job, console=console, what=what, engine=engine)
    ok = sum(r.status == "ok" for r in result.results)
    skipped = sum(r.status == "skipped" for r in result.results)
    if not result.interrupted and ok + skipped:
        console.line(f"wrote {ok} result(s)" + (f", skipped {skipped}" if skipped else "") + f"; summary: {result.summary}")
    if report is not None and result.records and not result.interrupted:
        from .report import write_report

        before = {p: _stamp(p) for p in files_under(report)} if Path(report).is_dir() else {}
        section = job.pipeline.report_section(result.records, class_map, report)
        index = write_report(report, [section], title=title or f"segsuite {job.command}: {len(result.records)} result(s)")
        # the report's own pages and pictures are never taken as inputs; other files in that folder stay inputs
        record_written([p for p in files_under(report) if before.get(p, None) != _stamp(p)])
        console.line(f"report: {index}")
    return result


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
            try:
                fields = dict(job.pipeline.summary_fields(r.record))
            except Exception:  # noqa: BLE001 - the summary must be written; the columns stay empty
                fields = {}
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
