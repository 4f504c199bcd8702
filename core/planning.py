"""Before a job runs: which files are its inputs, and which paths each input will write.

* :func:`expand_inputs`: a file, a folder (recursive, sorted, hidden files skipped) or a glob;
  only the domain's suffixes; never a file segsuite wrote (each output folder keeps a manifest,
  ``.segsuite-outputs.json``). :func:`expand_for` lets a pipeline expand its own inputs
  (one DICOM series of many files is one input).
* :func:`plan_job`: every input's output paths up front, same stems made distinct, outputs
  that would overwrite an input or the checkpoint refused.
* :func:`clean_stale_partials`: temporary files of writers that no longer run.

The executor (:mod:`segsuite.core.jobs`) uses these before any input is read.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputFileError, SegsuiteError
from .pipeline import Pipeline

MANIFEST = ".segsuite-outputs.json"
JOB_FILES = ("summary.json", "summary.csv", "segsuite.log")
"""What every job writes into its folder besides the inputs' outputs."""


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
    if any(ch in text for ch in "*?[") and not path.exists():  # an existing "run [1]" is a path, not a pattern
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


def expand_for(pipeline: Pipeline, spec: str | Path, suffixes: Sequence[str] | None = None,
               warn: Callable[[str], None] = lambda _m: None) -> list[Path]:
    """A job's inputs from one ``--input``: the pipeline's own expansion when it has one
    (:class:`~segsuite.core.pipeline.ExpandsInputs`), else :func:`expand_inputs` with ``suffixes``."""
    from .pipeline import ExpandsInputs

    if isinstance(pipeline, ExpandsInputs):
        return list(pipeline.expand(spec, warn))
    return expand_inputs(spec, suffixes)


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
    yield pipeline.stem(source)
    yield source.name
    try:
        rel = source.resolve().relative_to(base)
    except ValueError:
        rel = Path(*source.resolve().parts[1:])
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
    single_suffixes = tuple(s.lower() for s in pipeline.single_file_suffixes)
    names_file = output is not None and bool(single_suffixes) and str(output).lower().endswith(single_suffixes) \
        and not Path(output).is_dir()
    if names_file and len(inputs) > 1:
        raise SegsuiteError(f"{output}: several inputs need an output folder, not a file name")
    if output is not None and not names_file and Path(output).exists() and not Path(output).is_dir():
        raise SegsuiteError(f"{output}: --output must be a folder (this is a file)"
                            + (f"; a file name ending in {', '.join(pipeline.single_file_suffixes)} names the "
                               "output of a single input" if single_suffixes else ""))
    default = pipeline.default_output
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
                if claimed[resolved] == src:
                    raise SegsuiteError(f"{p}: two outputs of {src} would have this name; choose other output names")
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
    for name in JOB_FILES:  # the job's own files never replace a file segsuite did not write
        path = folder / name
        if path.exists() and name not in written_by_segsuite(folder):
            raise SegsuiteError(f"{path}: exists and was not written by segsuite; the job would replace it with its "
                                "own summary; choose another --output or move that file")
        if path.resolve() in protected or path.resolve() in claimed:
            raise SegsuiteError(f"{path}: the job's summary would overwrite an input or an output; choose another --output")
    return Plan(planned, folder, names_file)


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



def clean_stale_partials(folder: Path) -> list[Path]:
    """Remove temporary files (``.NAME.partial-PID-...``) of segsuite processes that no longer run."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(".*.partial-*"):
        pid = _partial_pid(p.name)
        if pid is not None and (pid == os.getpid() or process_alive(pid)):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _partial_pid(name: str) -> int | None:
    tail = name.split(".partial-", 1)[1]
    head = tail.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
