"""``segsuite plugins``: what is installed, which domains, classes and commands it adds."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import registry


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List installed plugins with their domains, class maps, models and commands."""
    desc = registry().describe()
    if as_json:
        typer.echo(json.dumps(desc, indent=2))
        return
    for p in desc["plugins"]:
        typer.echo(f"{p['name']}  ({p['source']}; {p['module']})")
        for d in p["domains"]:
            typer.echo(f"  domain {d['name']}: {d['description']}")
            typer.echo(f"    {d['spatial_dims']}D, {d['in_channels']} input channel(s), default model {d['default_model']['name']}, patch {'x'.join(map(str, d['patch_size']))}")
            for key, names in d["class_maps"].items():
                typer.echo(f"    classes [{key}] ({len(names)}): {', '.join(names)}")
            if d["readers"]:
                typer.echo(f"    reads: {' '.join(d['readers'])}")
            if d.get("run_options"):
                typer.echo(f"    run options: {' '.join(d['run_options'])}  (segsuite run {d['name']} --help)")
        if p["models"]:
            typer.echo(f"  models: {', '.join(p['models'])}")
        if p["commands"]:
            typer.echo(f"  commands: {', '.join(p['commands'])}")
    for f in desc["failures"]:
        typer.echo(f"FAILED {f['name']} ({f['source']}): {f['message']}")
