"""The distribution: what the wheel contains, what set-up and CI run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = {"core": "segsuite/core", "plugins": "segsuite/plugins", "cli": "segsuite/cli"}


def files_on_disk() -> set[str]:
    """Every file of the three package folders, as its path inside the wheel."""
    found = set()
    for folder, target in PACKAGE_ROOTS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc",):
                found.add(f"{target}/{path.relative_to(ROOT / folder).as_posix()}")
    return found


@pytest.mark.slow
def test_wheel_contains_every_package_file_on_disk(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", *PACKAGE_ROOTS):
        p = ROOT / name
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if p.is_dir() else {}))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = (tmp_path / "dist").glob("segsuite-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "segsuite = segsuite.cli.main:main" in zf.read(entry_points).decode()
    missing = sorted(files_on_disk() - names)
    assert not missing, (
        "these files exist on disk but are not in the wheel; add their package to "
        f"[tool.setuptools] packages (or package-data) in pyproject.toml: {missing}"
    )


def test_every_folder_with_code_is_a_declared_package():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = set()
    for folder, target in PACKAGE_ROOTS.items():
        for init in (ROOT / folder).rglob("*.py"):
            rel = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([*target.split("/"), *rel.parts]))
    assert on_disk <= declared, f"undeclared packages: {sorted(on_disk - declared)}"
    for pkg in on_disk:
        folder = ROOT / Path(*pkg.split(".")[1:])
        assert (folder / "__init__.py").exists(), f"{folder} has code but no __init__.py"


def test_declared_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert {"torch", "torchvision", "monai", "rasterio", "nibabel", "typer", "pluggy"} <= names
    assert names & {"opencv-python", "opencv-python-headless"}
    assert any(d.startswith("pytest") for d in project["optional-dependencies"]["dev"])
    torch_spec = next(d for d in project["dependencies"] if d.startswith("torch>"))
    assert re.fullmatch(r"torch>=2\.\d+", torch_spec), "keep a torch lower bound that 2.14.1 satisfies, no upper cap"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", text, re.S)
    assert block, "README needs a code block with the set-up commands at the top"
    assert text.index(block.group(0)) < 1500, "the two commands belong at the top of the README"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_readme_starts_with_exactly_two_commands():
    assert readme_commands() == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command_and_propagates_failure():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.startswith("#!")
    body = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert "set -euo pipefail" in body
    assert body[-1] == f"exec {readme_commands()[1]}"
    makefile = (ROOT / "Makefile").read_text()
    test_recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "pytest" in test_recipe and "|| true" not in test_recipe and "-" != test_recipe.strip()[0]
