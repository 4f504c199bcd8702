"""The per-input contract between a domain and the core's job executor.

A domain hands the core one :class:`Pipeline`. The executor (:mod:`segsuite.core.jobs`)
expands the inputs, plans every output path, loads the model once (:meth:`Pipeline.load`)
and then calls :meth:`Pipeline.run_one` for each input. ``run_one`` segments one input,
writes exactly the files the executor planned for it (through the core's atomic writers)
and returns a JSON-able record. It never prints and never catches an error to carry on:
isolating failures, the progress bar, ``summary.json``, resuming and interruption are the
executor's job, the same for every domain.

Run options are declared as data (:class:`RunOption`); ``segsuite run DOMAIN --help``
lists them, and they are checked before any input is read. Optional capabilities are
``runtime_checkable`` protocols (:class:`Evaluates`, :class:`Explains`, :class:`Summarizes`,
:class:`ExpandsInputs`)
tested with ``isinstance``; nothing inspects signatures or parameter names.

:class:`BasePipeline` supplies the defaults most pipelines want (output folder, stems,
a plain report table); subclassing it is optional.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import SegsuiteError

if TYPE_CHECKING:
    from .classmap import ClassMap
    from .report import ReportSection

_OPTION_TYPES = (bool, int, float, str, Path)
# Options every `segsuite run` command has; a pipeline cannot declare them again.
COMMON_OPTIONS = frozenset({"input", "model", "output", "device", "runtime", "report", "skip_existing", "help",
                            "engine", "address", "workers", "gpus_per_worker"})


@dataclass(frozen=True)
class RunOption:
    """One option of ``segsuite run DOMAIN``, declared by the domain's pipeline.

    ``name`` is the keyword the pipeline reads from ``context.options`` (``min_area``); the
    command-line flag is derived from it (``--min-area``) unless ``flag`` says otherwise.
    ``type`` is one of bool (a switch; ``default=True`` gives it a ``--no-`` form), int, float,
    str or Path. ``choices``, ``minimum`` and
    ``maximum`` (``exclusive`` makes both bounds strict) and ``validate`` (a callable that
    raises :class:`SegsuiteError`) are checked before any input is read. ``default`` is what
    the pipeline sees when the option is not given (``None``: "not given", e.g. "use the
    threshold stored in the model card").
    """

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    validate: Callable[[Any], None] | None = None
    flag: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.name.islower():
            raise SegsuiteError(f"run option {self.name!r}: the name must be a lower-case Python identifier")
        if self.name in COMMON_OPTIONS:
            raise SegsuiteError(f"run option {self.name!r}: every `segsuite run` command already has --{self.name.replace('_', '-')}")
        if self.type not in _OPTION_TYPES:
            raise SegsuiteError(f"run option {self.name!r}: type must be one of bool, int, float, str, Path")
        if not self.flag:
            object.__setattr__(self, "flag", "--" + self.name.replace("_", "-"))
        if not self.flag.startswith("--"):
            raise SegsuiteError(f"run option {self.name!r}: flag {self.flag!r} must start with --")

    def check(self, value: Any) -> Any:
        """``value`` if it is acceptable, else a one-line :class:`SegsuiteError` naming the flag."""
        if value is None or self.type is bool:
            return value
        if self.type is float and not math.isfinite(value):  # nan compares false with every bound
            raise SegsuiteError(f"{self.flag} {value}: must be a finite number")
        if self.choices is not None and value not in self.choices:
            raise SegsuiteError(f"{self.flag} {value!r}: choose one of {', '.join(self.choices)}")
        low, high = self.minimum, self.maximum
        if self.exclusive:
            bad = (low is not None and value <= low) or (high is not None and value >= high)
        else:
            bad = (low is not None and value < low) or (high is not None and value > high)
        if bad:
            if low is not None and high is not None:
                where = f"between {low:g} and {high:g}" + (" (exclusive)" if self.exclusive else "")
            elif low is not None:
                where = f"{'greater than' if self.exclusive else 'at least'} {low:g}"
            else:
                where = f"{'less than' if self.exclusive else 'at most'} {high:g}"
            raise SegsuiteError(f"{self.flag} {value}: must be {where}")
        if self.validate is not None:
            self.validate(value)
        return value


def check_options(declared: Sequence[RunOption], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared option with its value (given or default), checked; unknown names are refused."""
    known = {o.name: o for o in declared}
    unknown = [k for k in given if k not in known]
    if unknown:
        raise SegsuiteError(f"--{unknown[0].replace('_', '-')} is not an option of this pipeline; it takes: "
                            f"{', '.join(o.flag for o in declared) or 'no options'}")
    return {name: opt.check(given.get(name, opt.default)) for name, opt in known.items()}


@dataclass
class RunContext:
    """What :meth:`Pipeline.run_one` gets besides its input and planned outputs."""

    model: Any
    """What :meth:`Pipeline.load` returned (loaded once per job, or once per worker)."""
    options: Mapping[str, Any]
    """Every declared option, checked (defaults filled in)."""
    checkpoint: Path
    device: str
    output: Path | None
    """The job's output folder (``None``: outputs go beside each input)."""
    warn: Callable[[str], None] = field(default=lambda _m: None)
    """Report a problem that does not fail the input (printed as ``segsuite: warning: ...``)."""
    progress: Callable[[int, int], None] | None = None
    """``progress(done, total)`` for long single inputs (windows of a large scene)."""


@runtime_checkable
class Pipeline(Protocol):
    """What ``segsuite run DOMAIN`` runs for each input (:class:`BasePipeline` has defaults for
    every member but ``outputs``, ``run_one`` and ``describe``)."""

    name: str
    """Shown in reports and messages (usually the domain's name)."""
    options: Sequence[RunOption]
    suffixes: tuple[str, ...]
    """Input file suffixes: inputs are expanded to these, and the stem is the name without them."""
    default_output: Path | None
    """The output folder without ``--output`` (``None``: beside each input)."""
    single_file_suffixes: tuple[str, ...]
    """Suffixes of an ``--output`` that names the one output file of a single input (``()``: none)."""

    def stem(self, source: Path) -> str:
        """The base of ``source``'s output names."""
        ...

    def load(self, checkpoint: Path, options: Mapping[str, Any], device: str) -> Any:
        """Load the model and everything that is the same for every input; called once per job
        (once per worker on a distributed engine), after the options were checked and before
        any input is read. Problems with the model or the option combination raise here, so
        the job stops before it starts."""
        ...

    def outputs(self, source: Path, stem: str, folder: Path, options: Mapping[str, Any],
                file: Path | None = None) -> dict[str, Path]:
        """Every path ``run_one`` will write for ``source``: ``{key: folder/...}`` named from
        ``stem`` (unique within the job). The key ``"record"`` names the per-input JSON the
        executor writes from the returned record. ``file`` is set when the user named the one
        output file (``--output x.nii.gz`` for one input, see ``single_file_suffixes``): the
        main output is then ``file`` and the others are named after it."""
        ...

    def run_one(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        """Segment ``source`` and write ``outputs`` (atomically); return a JSON-able record."""
        ...

    def describe(self, record: Mapping[str, Any]) -> str:
        """The console line for one finished input."""
        ...

    def report_section(self, records: Sequence[Mapping[str, Any]], class_map: "ClassMap",
                       report_dir: Path) -> "ReportSection":
        """The HTML report section for a job's records (each has ``input`` and ``outputs``);
        pictures it makes go to ``report_dir``."""
        ...


@runtime_checkable
class Summarizes(Protocol):
    """A pipeline that has a batch-level summary (e.g. industrial: OK/NG counts) and per-input
    columns for ``summary.csv``."""

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> str:
        """Printed after the per-input lines."""
        ...

    def summary_fields(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Extra ``summary.csv`` columns for one successful input (plain values)."""
        ...


@runtime_checkable
class Evaluates(Protocol):
    """A pipeline whose domain has its own metrics (``segsuite evaluate DOMAIN``, the demo)."""

    def evaluate(self, checkpoint: Path, data: Path, output: Path | None, *, device: str = "auto") -> dict[str, Any]:
        """Score ``checkpoint`` on the labelled data ``data``; write the metrics under ``output``."""
        ...

    def describe_evaluation(self, result: Mapping[str, Any]) -> str:
        """What ``segsuite evaluate DOMAIN`` prints."""
        ...

    def add_evaluation(self, section: "ReportSection", result: Mapping[str, Any], output: Path) -> None:
        """Put the evaluation (metrics, confusion matrix, domain tables) into a report section."""
        ...


@runtime_checkable
class ExpandsInputs(Protocol):
    """A pipeline whose inputs are not one file each: it turns ``--input`` into its inputs itself
    (the medical domain makes each DICOM series, many files, one input). Without it the executor
    takes the files with the pipeline's ``suffixes``."""

    def expand(self, spec: str | Path, warn: Callable[[str], None]) -> list[Path]:
        """The inputs ``spec`` (a file, folder or glob) names, in a stable order; each is what
        :meth:`Pipeline.run_one` gets as ``source``. ``warn`` reports what was left out and why.
        Nothing found is a one-line :class:`SegsuiteError`."""
        ...


@runtime_checkable
class Explains(Protocol):
    """A pipeline whose domain explains its own inputs (e.g. volumes, on the input's grid)."""

    def explainer(self, class_name: str, layer: str | None) -> Pipeline:
        """The pipeline ``segsuite explain DOMAIN --class NAME`` runs per input."""
        ...


class BasePipeline:
    """Defaults for a :class:`Pipeline`: subclass it and write ``outputs``, ``run_one`` and ``describe``.

    ``suffixes`` are the input file suffixes the stem is cut from (longest match first, so
    ``.nii.gz`` is cut whole); ``default_output`` is the folder used without ``--output``
    (``None``: beside each input); ``single_file_suffixes`` are the suffixes of an
    ``--output`` that names the one output file of a single input.
    """

    name: str = "run"
    options: Sequence[RunOption] = ()
    suffixes: tuple[str, ...] = ()
    default_output: Path | None = Path("segsuite-run")
    single_file_suffixes: tuple[str, ...] = ()
    spatial_dims: int = 2
    """What the default :meth:`load` accepts."""

    def load(self, checkpoint: Path, options: Mapping[str, Any], device: str) -> Any:
        """The checkpoint's :class:`~segsuite.core.infer.Predictor` (see :func:`load_predictor`)."""
        return load_predictor(checkpoint, device, options, spatial_dims=self.spatial_dims, what=self.name)

    def stem(self, source: Path) -> str:
        name = source.name
        for suffix in sorted(self.suffixes, key=len, reverse=True):
            if name.lower().endswith(suffix.lower()) and len(name) > len(suffix):
                return name[: -len(suffix)]
        return source.stem or name

    def report_section(self, records: Sequence[Mapping[str, Any]], class_map: "ClassMap",
                       report_dir: Path) -> "ReportSection":
        from .report import summaries_section

        return summaries_section(self.name, records, class_map)


def load_predictor(checkpoint: Path, device: str, options: Mapping[str, Any] | None = None, *,
                   spatial_dims: int | None = 2, what: str = "this domain") -> Any:
    """Load a checkpoint (or a segsuite ONNX export) as a Predictor, refusing what no input could
    use: a model of the wrong dimensionality, or ``--uncertainty mcdropout`` on a model without
    dropout. Every pipeline that segments with one network starts here."""
    from .infer import Predictor
    from .uncertainty import require_dropout

    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    if spatial_dims is not None and predictor.spatial_dims != spatial_dims:
        raise SegsuiteError(f"{checkpoint}: a {predictor.spatial_dims}D model; {what} needs a {spatial_dims}D model")
    if (options or {}).get("uncertainty") == "mcdropout":
        require_dropout(predictor.model)
    return predictor
