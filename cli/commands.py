"""Registers the core commands; one module per command.

``run`` is not here: it is a group generated from the installed domains
(:func:`segsuite.cli.run.build_run_app`), added by :func:`segsuite.cli.app.build_cli`.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from . import bench, demo, evaluate, explain, export, labels, models_cmd, plugin_cmd, plugins_cmd, sample, split, train

    app.command("plugins")(plugins_cmd.plugins)
    app.command("models")(models_cmd.models)
    app.command("train")(train.train)
    app.command("evaluate")(evaluate.evaluate)
    app.command("explain")(explain.explain)
    app.command("split")(split.split)
    app.command("export")(export.export)
    app.command("bench")(bench.bench)
    app.command("demo")(demo.demo)
    app.command("sample")(sample.sample)
    app.add_typer(labels.app, name="labels")
    app.add_typer(plugin_cmd.app, name="plugin")
