"""`segsuite plugin new`: the scaffolded package installs, registers, trains, runs and tests itself."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_one_line_error

NAME = "lichen"
MODULE = "segsuite_lichen"


def _install(package: Path, site: Path) -> None:
    """What `pip install` does, without network: build the package and put it in ``site``."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(package)],
        check=True, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_scaffolded_plugin_installs_trains_runs_and_passes_its_own_tests(cli, segsuite_proc, tmp_path, monkeypatch):
    from segsuite.core.data.images import read_image_array
    from segsuite.core.plugins import load_plugins

    package = tmp_path / "segsuite-lichen"
    res = cli("plugin", "new", NAME, "--dir", package)
    assert res.exit_code == 0, res.output
    assert str(package) in res.stdout and f"pip install -e {package}" in res.stdout
    for step in ("segsuite plugins", f"segsuite sample {NAME}", f"segsuite train {NAME}", f"segsuite run {NAME}"):
        assert step in res.stdout, step
    pyproject = (package / "pyproject.toml").read_text()
    assert '[project.entry-points."segsuite.plugins"]' in pyproject and f'{NAME} = "{MODULE}.plugin"' in pyproject
    assert '"segsuite' in pyproject  # depends on segsuite
    for rel in ("README.md", ".gitignore", f"{MODULE}/__init__.py", f"{MODULE}/plugin.py", "tests/test_plugin.py"):
        assert (package / rel).is_file(), rel
    assert not any("$" in p.read_text() for p in package.rglob("*.py")), "a placeholder was left unsubstituted"
    assert _cli_imports(package) == [], "a plugin must import nothing from segsuite.cli"
    assert not (package / MODULE / "runner.py").exists()  # the executor owns the batch loop

    site = tmp_path / "site"
    _install(package, site)
    assert (site / MODULE / "plugin.py").is_file()

    # the real entry point in a fresh process: the plugin is listed with its domain
    res = segsuite_proc("plugins", "--json", pythonpath=[site])
    assert res.returncode == 0, res.stderr
    listing = json.loads(res.stdout)
    assert listing["failures"] == []
    (plugin,) = [p for p in listing["plugins"] if p["name"] == NAME]
    assert plugin["source"] == "segsuite-lichen 0.1.0" and not plugin["builtin"]
    (dom,) = plugin["domains"]
    assert dom["synthetic"] and dom["class_maps"] == {NAME: ["background", "spot", "streak"]}
    assert dom["run_options"] == ["--min-share"] and "writers" not in dom

    # the pipeline's declared option is an option of `segsuite run NAME`, and only of it
    res = segsuite_proc("run", NAME, "--help", pythonpath=[site])
    assert res.returncode == 0, res.stderr
    assert "--min-share" in res.stdout and "--input" in res.stdout and "--skip-existing" in res.stdout
    assert "--min-share" not in segsuite_proc("run", "--help", pythonpath=[site]).stdout

    # sample data through the domain's generator
    data = tmp_path / "data"
    res = segsuite_proc("sample", NAME, "--output", data, "--seed", "1", pythonpath=[site])
    assert res.returncode == 0, res.stderr
    images = sorted((data / "images").glob("*.png"))
    assert len(images) == 48 and len(list((data / "masks").glob("*.png"))) == 48

    # train and run in this process (torch is imported once), with the registry found on sys.path
    monkeypatch.syspath_prepend(str(site))
    registry = load_plugins()
    assert registry.domain_owner(NAME) == NAME
    run_dir = tmp_path / "run"
    res = cli("train", NAME, "--data", data, "--epochs", "1", "--batch-size", "8", "--device", "cpu",
              "--output", run_dir, registry=registry)
    assert res.exit_code == 0, res.output
    checkpoint = run_dir / "last.safetensors"
    assert checkpoint.is_file()
    from segsuite.core.checkpoint import read_card

    card = read_card(checkpoint)
    assert card.domain == NAME and card.model["arch"] == "bnunet" and card.patch_size == [128, 128]

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for image in images[:2]:
        (inputs / image.name).write_bytes(image.read_bytes())
    out = tmp_path / "results"
    res = cli("run", NAME, "--input", inputs, "--model", checkpoint, "--output", out, "--device", "cpu",
              "--min-share", "0.05", registry=registry)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())  # the executor's summary, same for every domain
    assert summary["command"] == f"segsuite run {NAME}" and summary["options"] == {"min_share": 0.05}
    assert summary["counts"] == {"ok": 2, "failed": 0, "skipped": 0, "not run": 0}
    assert [Path(e["input"]).name for e in summary["inputs"]] == [image.name for image in images[:2]]
    for image, entry in zip(images[:2], summary["inputs"]):
        assert entry["status"] == "ok" and entry["error"] is None
        outputs = {key: Path(path) for key, path in entry["outputs"].items()}
        assert outputs == {"labels": out / f"{image.stem}_labels.png", "color": out / f"{image.stem}_color.png",
                           "overlay": out / f"{image.stem}_overlay.png", "record": out / f"{image.stem}.json"}
        labels = read_image_array(outputs["labels"])
        assert labels.shape == (160, 160) and labels.max() < 3
        assert read_image_array(outputs["overlay"]).shape == (160, 160, 3)
        record = json.loads(outputs["record"].read_text())
        assert sum(record["pixels"].values()) == 160 * 160
        assert record["pixels"]["spot"] == int((labels == 1).sum())
        # --min-share: only the classes covering at least 5% of the image are listed, on the console too
        assert record["min_share"] == 0.05
        assert record["classes"] == [n for n, share in record["fraction"].items() if share >= 0.05]
        line = next(ln for ln in res.stdout.splitlines() if ln.startswith(f"{image.name}: "))
        assert [part.rsplit(" ", 1)[0] for part in line.split(": ", 1)[1].split(", ")] == record["classes"] \
            or (record["classes"] == [] and "no class reaches --min-share" in line)
    assert (out / "summary.csv").read_text().splitlines()[0].startswith("input,status,seconds,error")

    # a bad value is refused in one line before any input is read (this input does not exist)
    res = cli("run", NAME, "--input", tmp_path / "missing", "--model", checkpoint, "--min-share", "1.5",
              registry=registry)
    assert_one_line_error(res, "--min-share 1.5", "between 0 and 1")

    # the package's own tests pass against the installed plugin
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
                         cwd=package, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "failed" not in res.stdout and "skipped" not in res.stdout


def _cli_imports(package: Path) -> list[str]:
    """``file: module`` for every import of ``segsuite.cli`` in the package's Python files."""
    found = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if n == "segsuite.cli" or n.startswith("segsuite.cli.")]
    return found


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name)


@pytest.mark.parametrize("name", ["Lichen", "9lives", "two words", "lichen.v2", "_lichen", "medical"])
def test_bad_names_are_refused_in_one_line(cli, tmp_path, name):
    res = cli("plugin", "new", name, "--dir", tmp_path / "pkg")
    assert_one_line_error(res, f"plugin name {name!r}")
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_target_is_refused_and_left_alone(cli, tmp_path):
    target = tmp_path / "pkg"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    res = cli("plugin", "new", NAME, "--dir", target)
    assert_one_line_error(res, str(target), "not empty")
    assert [p.name for p in target.iterdir()] == ["notes.txt"] and _leftovers(tmp_path) == []

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_one_line_error(cli("plugin", "new", NAME, "--dir", a_file), str(a_file), "not a folder")


def test_an_empty_target_and_the_default_folder_are_used(cli, tmp_path, monkeypatch):
    target = tmp_path / "empty"
    target.mkdir()
    assert cli("plugin", "new", "road-marks", "--dir", target).exit_code == 0
    assert (target / "segsuite_road_marks" / "plugin.py").is_file()
    text = (target / "pyproject.toml").read_text()
    assert 'name = "segsuite-road-marks"' in text and 'road-marks = "segsuite_road_marks.plugin"' in text
    assert 'name="road-marks"' in (target / "segsuite_road_marks" / "plugin.py").read_text()

    monkeypatch.chdir(tmp_path)
    assert cli("plugin", "new", NAME).exit_code == 0
    assert (tmp_path / "segsuite-lichen" / MODULE / "synthetic.py").is_file()
    assert _leftovers(tmp_path) == []


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    from segsuite.cli import plugin_cmd

    written: list[Path] = []
    real = plugin_cmd._write_file

    def fail_on_third(path: Path, text: str) -> None:
        if len(written) == 2:
            raise OSError(28, "No space left on device", str(path))
        written.append(path)
        real(path, text)

    monkeypatch.setattr(plugin_cmd, "_write_file", fail_on_third)
    with pytest.raises(OSError):
        plugin_cmd.scaffold_plugin(NAME, tmp_path / "pkg")
    assert len(written) == 2 and list(tmp_path.iterdir()) == []


def test_the_rendered_modules_compile_and_every_template_is_used(tmp_path):
    from segsuite.cli.plugin_cmd import _template_files, plugin_names, render

    files = render(plugin_names("x-ray"))
    assert len(files) == len(_template_files())
    assert {"pyproject.toml", "README.md", ".gitignore", "tests/test_plugin.py", "segsuite_x_ray/plugin.py"} <= set(files)
    for rel, text in files.items():
        if rel.endswith(".py"):
            compile(text, rel, "exec")
    assert [rel for rel, text in files.items() if "$" in text] == []
