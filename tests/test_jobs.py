"""The job executor: planning, failure isolation, summaries, resuming and interruption.

Most tests use a tiny text pipeline (no model) so that they test the executor's promises
alone; the domains' own tests run the same promises through `segsuite run DOMAIN`.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from segsuite.core.errors import SegsuiteError
from segsuite.core.jobs import MANIFEST, Job, clean_stale_partials, expand_inputs, plan_job, run_job
from segsuite.core.pipeline import BasePipeline, RunOption, check_options

ROOT = Path(__file__).resolve().parents[1]


class TextPipeline(BasePipeline):
    """Upper-cases a text file; "bad" content is a user error, "bug" content raises a KeyError."""

    options = (RunOption("repeat", int, 1, minimum=1, help="copies"),)
    suffixes = (".txt", ".dat")

    def __init__(self, default_output: Path | None = Path("segsuite-run"), delay: float = 0.0) -> None:
        self.default_output = default_output
        self.delay = delay
        self.calls: list[str] = []

    def load(self, checkpoint, options, device):
        return {"loaded": True}

    def outputs(self, source, stem, folder, options, file=None):
        return {"upper": folder / f"{stem}_upper.txt", "record": folder / f"{stem}.json"}

    def run_one(self, source, outputs, context):
        from segsuite.core.io import atomic_path

        self.calls.append(source.name)
        text = source.read_text()
        if text.strip() == "bad":
            raise SegsuiteError(f"{source}: says bad")
        if text.strip() == "bug":
            raise KeyError("oops")
        with atomic_path(outputs["upper"]) as tmp:
            tmp.write_text(text.upper() * context.options["repeat"])
            time.sleep(self.delay)
        return {"chars": len(text)}

    def describe(self, record):
        return f"{Path(record['input']).name}: {record['chars']} chars"


def _job(inputs, output, pipeline=None, **kw):
    pipeline = pipeline or TextPipeline()
    return Job(pipeline=pipeline, inputs=inputs, checkpoint=Path("none.safetensors"), output=output,
               options=check_options(pipeline.options, kw.pop("options", {})), device="cpu", **kw)


def _files(folder: Path, texts: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return sorted(folder / n for n in texts)


def test_bad_inputs_first_and_last_fail_alone_and_are_summarised(tmp_path, capsys):
    inputs = _files(tmp_path / "in", {"a.txt": "bad", "b.txt": "fine", "c.txt": "also fine", "z.txt": "bug"})
    result = run_job(_job(inputs, tmp_path / "out"))
    assert result.exit_code == 2
    assert [r.status for r in result.results] == ["failed", "ok", "ok", "failed"]
    assert (tmp_path / "out" / "b_upper.txt").read_text() == "FINE"
    assert not (tmp_path / "out" / "a_upper.txt").exists() and not (tmp_path / "out" / "z_upper.txt").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"segsuite: error: {inputs[0]}: says bad"
    assert err[1].startswith(f"segsuite: error: {inputs[3]}: KeyError: 'oops' (a bug: the traceback is in segsuite.log)")
    assert err[2] == f"segsuite: error: 2 of 4 failed; see {tmp_path / 'out' / 'summary.json'}"
    assert len(err) == 3
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"] == {"ok": 2, "failed": 2, "skipped": 0, "not run": 0}
    assert [e["status"] for e in summary["inputs"]] == ["failed", "ok", "ok", "failed"]
    assert summary["inputs"][0]["error"].endswith("says bad") and summary["inputs"][1]["error"] is None
    assert set(summary["inputs"][1]) == {"input", "status", "outputs", "error", "seconds"}
    record = json.loads((tmp_path / "out" / "b.json").read_text())
    assert record["chars"] == 4 and record["outputs"]["upper"].endswith("b_upper.txt")
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["failed", "ok", "ok", "failed"] and rows[1]["upper"].endswith("b_upper.txt")
    log = (tmp_path / "out" / "segsuite.log").read_text()
    assert "Traceback" in log and "KeyError: 'oops'" in log


def test_same_stems_get_distinct_names_deterministically(tmp_path):
    inputs = _files(tmp_path / "in", {"x.txt": "one", "x.dat": "two", "sub/x.txt": "three"})
    result = run_job(_job(inputs, tmp_path / "out"))
    assert result.exit_code == 0
    names = {r.source.relative_to(tmp_path / "in").as_posix(): Path(r.outputs["upper"]).name for r in result.results}
    # sorted order: sub/x.txt, x.dat, x.txt -> the first keeps the stem, later ones their file name, then their path
    assert names == {"sub/x.txt": "x_upper.txt", "x.dat": "x.dat_upper.txt", "x.txt": "x.txt_upper.txt"}
    contents = sorted((tmp_path / "out" / n).read_text() for n in names.values())
    assert contents == ["ONE", "THREE", "TWO"]


def test_an_output_that_would_overwrite_an_input_stops_the_job_before_any_work(tmp_path):
    class Inplace(TextPipeline):
        def outputs(self, source, stem, folder, options, file=None):
            return {"upper": folder / f"{stem}.txt"}

    inputs = _files(tmp_path / "in", {"a.txt": "keep me"})
    pipeline = Inplace(default_output=None)  # beside the input: a.txt -> a.txt
    with pytest.raises(SegsuiteError, match="would overwrite the input"):
        run_job(_job(inputs, None, pipeline))
    assert pipeline.calls == [] and inputs[0].read_text() == "keep me"
    # through `..` too
    with pytest.raises(SegsuiteError, match="would overwrite the input"):
        plan_job(pipeline, inputs, tmp_path / "in" / ".." / "in", {})


def test_rerun_into_the_input_folder_does_not_take_its_own_outputs_as_inputs(tmp_path):
    folder = tmp_path / "d"
    _files(folder, {"a.txt": "one", "b.txt": "two"})
    first = run_job(_job(expand_inputs(folder, TextPipeline.suffixes), folder))
    assert first.exit_code == 0 and len(first.results) == 2
    assert "a_upper.txt" in json.loads((folder / MANIFEST).read_text())["files"]
    again = expand_inputs(folder, TextPipeline.suffixes)
    assert [p.name for p in again] == ["a.txt", "b.txt"]
    second = run_job(_job(again, folder))
    assert second.exit_code == 0 and len(second.results) == 2


def test_expansion_recurses_skips_hidden_and_glob_matched_folders(tmp_path):
    _files(tmp_path / "val", {"berlin/b1.txt": "x", "munich/m1.txt": "x", ".hidden/h.txt": "x", "notes.md": "x"})
    (tmp_path / "val" / "dir.txt").mkdir()
    assert [p.relative_to(tmp_path / "val").as_posix() for p in expand_inputs(tmp_path / "val", (".txt",))] == \
        ["berlin/b1.txt", "munich/m1.txt"]
    with pytest.raises(SegsuiteError, match="no input files"):  # val/*.txt matches only the folder dir.txt
        expand_inputs(str(tmp_path / "val" / "*.txt"), (".txt",))
    globbed = expand_inputs(str(tmp_path / "val" / "**" / "*.txt"), (".txt",))
    assert [p.name for p in globbed] == ["b1.txt", "m1.txt"]  # dir.txt is a folder and skipped
    with pytest.raises(SegsuiteError, match="no input files with suffix .png"):
        expand_inputs(tmp_path / "val", (".png",))


def test_skip_existing_resumes_only_the_unfinished_inputs(tmp_path):
    inputs = _files(tmp_path / "in", {"a.txt": "one", "b.txt": "two", "c.txt": "three"})
    run_job(_job(inputs[:2], tmp_path / "out"))
    pipeline = TextPipeline()
    result = run_job(_job(inputs, tmp_path / "out", pipeline, skip_existing=True))
    assert pipeline.calls == ["c.txt"]
    assert [r.status for r in result.results] == ["skipped", "skipped", "ok"] and result.exit_code == 0
    assert result.records[0]["chars"] == 3  # a skipped input keeps its record for reports


def test_stale_partial_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a_upper.partial-{dead.stdout.strip()}-xyz.txt"
    ours = tmp_path / f".b.partial-{os.getpid()}-abc.txt"
    old_style = tmp_path / ".c.partial-k2j3h4.txt"
    for p in (stale, ours, old_style):
        p.write_text("half")
    removed = clean_stale_partials(tmp_path)
    assert sorted(removed) == sorted([stale, old_style]) and ours.exists()


def test_options_are_checked_before_any_input_is_read():
    with pytest.raises(SegsuiteError, match=r"--repeat 0: must be at least 1"):
        check_options(TextPipeline.options, {"repeat": 0})
    with pytest.raises(SegsuiteError, match="--colour is not an option of this pipeline; it takes: --repeat"):
        check_options(TextPipeline.options, {"colour": "red"})
    with pytest.raises(SegsuiteError, match="already has --output"):
        RunOption("output", str)


SIGTERM_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
import typer
from test_jobs import TextPipeline, _job
from segsuite.cli.common import execute_job
inputs = sorted(Path({folder!r}).glob("*.txt"))
try:
    execute_job(_job(inputs, Path({out!r}), TextPipeline(delay=1.0)))
except typer.Exit as exc:
    sys.exit(exc.exit_code)
"""


def test_sigterm_stops_cleanly_with_a_summary_and_no_partial_files(tmp_path):
    inputs = _files(tmp_path / "in", {f"{i}.txt": f"text {i}" for i in range(6)})
    out = tmp_path / "out"
    script = SIGTERM_SCRIPT.format(tests=str(ROOT / "tests"), folder=str(tmp_path / "in"), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "0_upper.txt").exists():
        time.sleep(0.05)
    time.sleep(0.3)  # the second input is now being written
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "interrupted (SIGTERM)" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    statuses = [e["status"] for e in summary["inputs"]]
    assert summary["interrupted"] == "SIGTERM" and statuses[0] == "ok" and "not run" in statuses
    assert len(statuses) == len(inputs)
    assert not [p for p in out.iterdir() if ".partial-" in p.name]
    written = {p.name for p in out.glob("*_upper.txt")}
    assert written == {f"{e['input'].rsplit('/', 1)[1][:-4]}_upper.txt" for e in summary["inputs"] if e["status"] == "ok"}


def test_layering_core_imports_no_plugin_or_cli_and_plugins_import_no_other_plugin():
    import ast

    problems = []
    for path in sorted((ROOT / "core").rglob("*.py")) + sorted((ROOT / "plugins").rglob("*.py")):
        rel = path.relative_to(ROOT)
        tree = ast.parse(path.read_text(), str(path))
        own = rel.parts[1] if rel.parts[0] == "plugins" and len(rel.parts) > 2 else None
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against the package
                    package = ("segsuite",) + rel.parts[:-1][: len(rel.parts) - node.level]
                    names = [".".join(package + ((node.module,) if node.module else ()))]
                else:
                    names = [node.module or ""]
            for name in names:
                if rel.parts[0] == "core" and name.startswith(("segsuite.cli", "segsuite.plugins")):
                    problems.append(f"{rel}: imports {name}")
                if rel.parts[0] == "plugins":
                    if name.startswith("segsuite.cli"):
                        problems.append(f"{rel}: imports {name}")
                    if name.startswith("segsuite.plugins.") and own is not None and name.split(".")[2] != own:
                        problems.append(f"{rel}: imports another plugin, {name}")
    assert problems == []


def test_skip_existing_never_takes_another_inputs_or_other_options_outputs(tmp_path):
    folder = tmp_path / "in"
    _files(folder, {"x.dat": "first"})
    run_job(_job([folder / "x.dat"], tmp_path / "out"))  # x.dat alone writes x_upper.txt
    _files(folder, {"x.txt": "second"})
    pipeline = TextPipeline()
    # run alone, x.txt plans the same names as x.dat did: only the record says whose files they are
    result = run_job(_job([folder / "x.txt"], tmp_path / "out", pipeline, skip_existing=True))
    assert pipeline.calls == ["x.txt"] and result.results[0].status == "ok"
    assert (tmp_path / "out" / "x_upper.txt").read_text() == "SECOND"
    pipeline = TextPipeline()
    result = run_job(_job([folder / "x.txt"], tmp_path / "out", pipeline, skip_existing=True, options={"repeat": 2}))
    assert pipeline.calls == ["x.txt"] and (tmp_path / "out" / "x_upper.txt").read_text() == "SECOND" * 2
    pipeline = TextPipeline()
    run_job(_job([folder / "x.txt"], tmp_path / "out", pipeline, skip_existing=True, options={"repeat": 2}))
    assert pipeline.calls == []


def test_a_failed_rerun_leaves_no_record_so_it_is_never_taken_as_complete(tmp_path):
    inputs = _files(tmp_path / "in", {"a.txt": "good"})
    run_job(_job(inputs, tmp_path / "out"))
    assert (tmp_path / "out" / "a.json").exists()
    inputs[0].write_text("bad")
    result = run_job(_job(inputs, tmp_path / "out"))
    assert result.exit_code == 2 and not (tmp_path / "out" / "a.json").exists()
    pipeline = TextPipeline()
    run_job(_job(inputs, tmp_path / "out", pipeline, skip_existing=True))
    assert pipeline.calls == ["a.txt"]


def test_job_files_never_replace_user_files_and_output_must_be_a_folder(tmp_path):
    inputs = _files(tmp_path / "in", {"a.txt": "x"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "summary.json").write_text("my own notes")
    with pytest.raises(SegsuiteError, match="summary.json: exists and was not written by segsuite"):
        run_job(_job(inputs, tmp_path / "out"))
    assert (tmp_path / "out" / "summary.json").read_text() == "my own notes"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SegsuiteError, match="afile: --output must be a folder"):
        run_job(_job(inputs, tmp_path / "afile"))


def test_paths_with_brackets_are_paths_and_report_folders_do_not_hide_inputs(tmp_path):
    from segsuite.core.jobs import run_and_report

    folder = tmp_path / "run [1]"
    _files(folder, {"a.txt": "one", "b.txt": "two"})
    assert [p.name for p in expand_inputs(folder, (".txt",))] == ["a.txt", "b.txt"]
    assert [p.name for p in expand_inputs(folder / "a.txt", (".txt",))] == ["a.txt"]

    class Reported(TextPipeline):
        def report_section(self, records, class_map, report_dir):
            from segsuite.core.report import ReportSection

            return ReportSection(domain="text", title="text")

    result = run_and_report(_job(expand_inputs(folder, (".txt",)), tmp_path / "out", Reported()), report=folder)
    assert result.exit_code == 0 and (folder / "index.html").is_file()
    again = expand_inputs(folder, (".txt",))  # the report went into the input folder: the inputs stay inputs
    assert [p.name for p in again] == ["a.txt", "b.txt"]
    assert "index.html" in json.loads((folder / MANIFEST).read_text())["files"]


def test_a_pipeline_whose_console_line_fails_still_finishes_the_batch(tmp_path, capsys):
    class Mute(TextPipeline):
        def describe(self, record):
            raise RuntimeError("cannot describe")

    inputs = _files(tmp_path / "in", {"a.txt": "one", "b.txt": "two"})
    result = run_job(_job(inputs, tmp_path / "out", Mute()))
    assert result.exit_code == 0 and [r.status for r in result.results] == ["ok", "ok"]
    assert "could not describe its result" in capsys.readouterr().err
