"""Plugin discovery: built-ins, a real third-party package, and broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from segsuite.core.domain import Domain
from segsuite.core.hookspecs import hook_names
from segsuite.core.plugins import BUILTIN_PLUGINS, PluginWarning, load_plugins

from conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "example_plugin"


def fake_distribution(site: Path, dist: str, module: str, source: str) -> None:
    """Install a one-module distribution with a ``segsuite.plugins`` entry point into ``site``.

    This is what pip leaves on disk (a module plus a ``.dist-info`` folder); importlib.metadata
    finds it on ``sys.path`` exactly as it finds pip-installed packages.
    """
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[segsuite.plugins]\n{dist} = {module}\n")


def test_builtins_provide_the_four_domains():
    reg = load_plugins(entry_points=False)
    assert set(reg.info) == set(BUILTIN_PLUGINS) == {"driving", "medical", "industrial", "satellite"}
    for name in BUILTIN_PLUGINS:
        assert reg.domain_owner(name) == name
        assert isinstance(reg.domain(name), Domain)
    assert reg.domain("medical").spatial_dims == 3
    assert reg.failures == []


def test_hook_contract_lists_every_hook():
    assert set(hook_names()) == {"segsuite_domains", "segsuite_models", "segsuite_cli"}


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """The example plugin built and installed with pip into a throw-away folder."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(EXAMPLE)],
        check=True, capture_output=True, text=True,
    )
    assert (site / "segsuite_microscopy" / "plugin.py").exists()
    return site


def test_installed_third_party_plugin_adds_a_domain_and_a_command(example_site, segsuite_proc, tmp_path):
    res = segsuite_proc("plugins", "--json", pythonpath=[example_site])
    assert res.returncode == 0, res.stderr
    desc = json.loads(res.stdout)
    by_name = {p["name"]: p for p in desc["plugins"]}
    builtins = set(BUILTIN_PLUGINS) - _disabled_here()
    assert builtins | {"microscopy"} <= set(by_name)
    micro = by_name["microscopy"]
    assert micro["source"] == "segsuite-microscopy 0.2.0" and not micro["builtin"]
    assert micro["commands"] == ["cells"]
    (dom,) = micro["domains"]
    assert dom["name"] == "microscopy" and dom["class_maps"] == {"cells": ["background", "cytoplasm", "nucleus"]}
    assert dom["run_options"] == ["--min-cell-area"]
    if "satellite" in builtins:
        assert by_name["satellite"]["commands"] == ["tile", "stats"]

    # the plugin's command runs, and the text listing shows the plugin too
    from segsuite.core.data.images import write_image

    img = tmp_path / "cells.png"
    write_image(img, np.arange(12, dtype=np.uint8).reshape(3, 4) * 10)
    res = segsuite_proc("cells", img, pythonpath=[example_site])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"shape": [1, 3, 4], "min": 0, "max": 110}
    listing = segsuite_proc("plugins", pythonpath=[example_site]).stdout
    assert "microscopy  (segsuite-microscopy 0.2.0; segsuite_microscopy.plugin)" in listing
    assert "classes [cells] (3): background, cytoplasm, nucleus" in listing

    # the domain is usable by name from the core commands
    res = segsuite_proc("run", "microscopy", "--input", img, pythonpath=[example_site])
    assert "unknown domain" not in res.stderr


def _disabled_here() -> set[str]:
    """Plugins this test run switched off with SEGSUITE_DISABLE_PLUGINS (the subprocesses inherit it)."""
    return {p.strip() for p in os.environ.get("SEGSUITE_DISABLE_PLUGINS", "").split(",") if p.strip()}


def _cell_images(folder: Path, n: int = 8, size: int = 32) -> Path:
    """``folder/images`` + ``folder/masks``: grey discs (cytoplasm) with a bright core (nucleus) on a dark field."""
    from segsuite.core.data.images import write_image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        image = rng.normal(20, 4, (size, size))
        mask = np.zeros((size, size), np.uint8)
        for _ in range(3):
            cy, cx, r = *rng.uniform(6, size - 6, 2), rng.uniform(3, 6)
            d = np.hypot(yy - cy, xx - cx)
            mask[d <= r], image[d <= r] = 1, 110
            mask[d <= r / 2], image[d <= r / 2] = 2, 220
        write_image(folder / "images" / f"cells_{i}.png", np.clip(image, 0, 255).astype(np.uint8))
        write_image(folder / "masks" / f"cells_{i}.png", mask)
    return folder


@pytest.mark.slow
def test_the_example_domain_declares_a_run_option_that_works_end_to_end(example_site, segsuite_proc, tmp_path):
    import cv2

    from segsuite.core.data.images import read_image_array

    def segsuite(*args):
        return segsuite_proc(*args, pythonpath=[example_site])

    # the option the plugin's pipeline declares is an option of `run microscopy`, and only of it
    res = segsuite("run", "microscopy", "--help")
    assert res.returncode == 0, res.stderr
    assert "--min-cell-area" in res.stdout and "--input" in res.stdout and "--skip-existing" in res.stdout
    assert "--min-cell-area" not in segsuite("run", "--help").stdout

    # a bad value is one line, before any input is read (this input does not even exist)
    res = segsuite("run", "microscopy", "--input", tmp_path / "missing.png", "--min-cell-area", "-1")
    assert_one_line_error(res, "--min-cell-area -1", "at least 0")

    # a tiny model for the domain, then the option end to end
    data = _cell_images(tmp_path / "data")
    res = segsuite("train", "microscopy", "--data", data, "--model", "segnet", "-O", "widths=[8,16]",
                   "--patch-size", "32,32", "--epochs", "1", "--batch-size", "8", "--lr", "3e-2",
                   "--class-weights", "inverse",  # one epoch then predicts some cells, large and small
                   "--device", "cpu", "--output", tmp_path / "train")
    assert res.returncode == 0, res.stderr
    model = tmp_path / "train" / "last.safetensors"
    # every predicted region first, so that the threshold can be put between region sizes the model really makes
    res = segsuite("run", "microscopy", "--input", data / "images", "--model", model, "--output", tmp_path / "all",
                   "--device", "cpu")
    assert res.returncode == 0, res.stderr
    every = sorted({a for e in json.loads((tmp_path / "all" / "summary.json").read_text())["inputs"]
                    for a in json.loads(Path(e["outputs"]["record"]).read_text())["cell_areas"]})
    if len(every) < 2:
        pytest.fail(f"the tiny model predicted regions of {len(every)} size(s) only; the option cannot be shown to act")
    smallest = every[len(every) // 2]  # some regions below it, some at or above it
    out = tmp_path / "out"
    res = segsuite("run", "microscopy", "--input", data / "images", "--model", model, "--output", out,
                   "--min-cell-area", str(smallest), "--device", "cpu")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == "segsuite run microscopy" and summary["options"] == {"min_cell_area": smallest}
    assert [e["status"] for e in summary["inputs"]] == ["ok"] * 8
    regions = ignored = 0
    for entry in summary["inputs"]:
        record = json.loads(Path(entry["outputs"]["record"]).read_text())
        labels = read_image_array(entry["outputs"]["labels"])
        _, _, stats, _ = cv2.connectedComponentsWithStats((labels > 0).astype(np.uint8), connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        regions += len(areas)
        ignored += record["ignored_regions"]
        # the record counts exactly the predicted regions of at least `smallest` pixels
        assert record["min_cell_area"] == smallest
        assert record["cells"] == int((areas >= smallest).sum()) and record["ignored_regions"] == int((areas < smallest).sum())
        assert record["cell_areas"] == sorted(int(a) for a in areas if a >= smallest)
        name = Path(entry["input"]).name
        assert f"{name}: {record['cells']} cell(s) of at least {smallest} px ({record['ignored_regions']} smaller" in res.stdout
    assert ignored > 0 and regions > ignored


def test_autoload_can_be_switched_off(example_site, segsuite_proc):
    res = segsuite_proc("plugins", "--json", pythonpath=[example_site], env={"SEGSUITE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    names = {p["name"] for p in json.loads(res.stdout)["plugins"]}
    assert "microscopy" not in names and set(BUILTIN_PLUGINS) - _disabled_here() <= names


def test_named_plugins_can_be_disabled(segsuite_proc):
    res = segsuite_proc("plugins", "--json", env={"SEGSUITE_DISABLE_PLUGINS": "satellite,driving"})
    names = {p["name"] for p in json.loads(res.stdout)["plugins"]}
    assert names.isdisjoint({"satellite", "driving"}) and {"medical", "industrial"} <= names
    res = segsuite_proc("tile", "x.tif", env={"SEGSUITE_DISABLE_PLUGINS": "satellite"})
    assert res.returncode == 2 and "No such command 'tile'" in res.stderr


BROKEN = {
    "import_fails": ("import nonexistent_package_xyz\n", "failed to import broken_import_fails: ModuleNotFoundError"),
    "hook_raises": (
        """
        import pluggy
        hookimpl = pluggy.HookimplMarker("segsuite")

        @hookimpl
        def segsuite_domains():
            raise RuntimeError("database offline")
        """,
        "hook segsuite_domains raised RuntimeError: database offline",
    ),
    "misspelt_hook": (
        """
        import pluggy
        hookimpl = pluggy.HookimplMarker("segsuite")

        @hookimpl
        def segsuite_domain():
            return []
        """,
        "implements unknown hook(s) segsuite_domain",
    ),
    "steals_medical": (
        """
        import pluggy
        hookimpl = pluggy.HookimplMarker("segsuite")

        @hookimpl
        def segsuite_domains():
            from segsuite.core.classmap import ClassMap
            from segsuite.core.domain import Domain, ModelSpec
            return [Domain(name="medical", description="impostor", spatial_dims=2, in_channels=1,
                           class_maps={"x": ClassMap(("a", "b"))}, default_model=ModelSpec("unet"),
                           patch_size=(64, 64))]
        """,
        "domain 'medical' is already provided by plugin 'medical'; skipped",
    ),
    "returns_junk": (
        """
        import pluggy
        hookimpl = pluggy.HookimplMarker("segsuite")

        @hookimpl
        def segsuite_domains():
            return ["not a domain"]
        """,
        "segsuite_domains returned a str, not a Domain",
    ),
    "bad_domain": (
        """
        import pluggy
        hookimpl = pluggy.HookimplMarker("segsuite")

        @hookimpl
        def segsuite_domains():
            from segsuite.core.classmap import ClassMap
            from segsuite.core.domain import Domain, ModelSpec
            return [Domain(name="Bad Name", description="", spatial_dims=2, in_channels=1,
                           class_maps={"x": ClassMap(("a",))}, default_model=ModelSpec("unet"),
                           patch_size=(64, 64))]
        """,
        "hook segsuite_domains raised DomainError: domain 'Bad Name': name must be lower-case",
    ),
    "cli_clash": (
        """
        import pluggy
        hookimpl = pluggy.HookimplMarker("segsuite")

        @hookimpl
        def segsuite_cli(app):
            @app.command("train")
            def train():
                print("hijacked")
        """,
        "command 'train' already exists; skipped",
    ),
    "cli_raises": (
        """
        import pluggy
        hookimpl = pluggy.HookimplMarker("segsuite")

        @hookimpl
        def segsuite_cli(app):
            raise ValueError("no typer here")
        """,
        "hook segsuite_cli raised ValueError: no typer here",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_plugin_warns_in_one_line_and_the_cli_survives(case, tmp_path, segsuite_proc):
    source, message = BROKEN[case]
    dist = f"broken_{case}"
    fake_distribution(tmp_path, dist, dist, source)
    res = segsuite_proc("plugins", "--json", pythonpath=[tmp_path])
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(warnings) == 1, res.stderr
    assert warnings[0].startswith(f"segsuite: warning: plugin '{dist}' ({dist} 1.0): ")
    assert message in warnings[0]
    assert "Traceback" not in res.stderr
    desc = json.loads(res.stdout)
    domains = {d["name"]: d for p in desc["plugins"] for d in p["domains"]}
    assert {"driving", "medical", "industrial", "satellite"} <= set(domains)
    assert domains["medical"]["spatial_dims"] == 3  # never replaced by an impostor
    assert [f["name"] for f in desc["failures"]] == [dist]
    # the core commands still work
    assert segsuite_proc("train", "--help", pythonpath=[tmp_path]).stdout.count("hijacked") == 0


def test_model_hook_merges_and_refuses_name_clashes():
    import pluggy

    hookimpl = pluggy.HookimplMarker("segsuite")

    class Extra:
        @staticmethod
        @hookimpl
        def segsuite_models():
            return {"tiny": lambda in_channels, num_classes, spatial_dims=2: None, "unet": lambda **k: None}

    with pytest.warns(PluginWarning, match="model name 'unet' is already used by the core"):
        reg = load_plugins(entry_points=False, extra=[("extra", Extra())])
        models = reg.plugin_models(reserved={"unet"})
    assert set(models) == {"tiny"}
    assert reg.info["extra"].models == ["tiny"]
