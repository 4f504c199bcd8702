"""Plugin discovery: built-ins, a real third-party package, and broken plugins."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from segsuite.core.domain import Domain
from segsuite.core.hookspecs import hook_names
from segsuite.core.plugins import BUILTIN_PLUGINS, PluginWarning, load_plugins

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
    assert {"driving", "medical", "industrial", "satellite", "microscopy"} <= set(by_name)
    micro = by_name["microscopy"]
    assert micro["source"] == "segsuite-microscopy 0.2.0" and not micro["builtin"]
    assert micro["commands"] == ["cells"]
    (dom,) = micro["domains"]
    assert dom["name"] == "microscopy" and dom["class_maps"] == {"cells": ["background", "cytoplasm", "nucleus"]}
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


def test_autoload_can_be_switched_off(example_site, segsuite_proc):
    res = segsuite_proc("plugins", "--json", pythonpath=[example_site], env={"SEGSUITE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    names = {p["name"] for p in json.loads(res.stdout)["plugins"]}
    assert "microscopy" not in names and "medical" in names


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
