"""Registers the core commands; one module per command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from . import bench, demo, evaluate, explain, export, labels, models_cmd, plugin_cmd, plugins_cmd, run, sample, split, train

    app.command("plugins")(plugins_cmd.plugins)
    app.command("models")(models_cmd.models)
    app.command("train")(train.train)
    app.command("evaluate")(evaluate.evaluate)
    app.command("run")(run.run)
    app.command("explain")(explain.explain)
    app.command("split")(split.split)
    app.command("export")(export.export)
    app.command("bench")(bench.bench)
    app.command("demo")(demo.demo)
    app.command("sample")(sample.sample)
    app.add_typer(labels.app, name="labels")
    app.add_typer(plugin_cmd.app, name="plugin")
