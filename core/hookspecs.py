"""The segsuite plugin contract: every hook, typed and documented, in one file.

A plugin is any module or object with functions decorated by :data:`hookimpl` whose names
match the specs below. Built-in domains (``segsuite.plugins.*``) are registered exactly
like third-party packages, which are found through the entry-point group
``segsuite.plugins``::

    # pyproject.toml of a third-party package
    [project.entry-points."segsuite.plugins"]
    mydomain = "mydomain_segsuite.plugin"

A plugin needs only the marker, which can be created without importing segsuite::

    import pluggy
    hookimpl = pluggy.HookimplMarker("segsuite")

All hooks are *collecting*: every plugin's result is gathered, none short-circuits.
A hook that raises disables that plugin's contribution to that hook with a one-line
warning; it never takes the CLI down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import pluggy

PROJECT = "segsuite"
ENTRY_POINT_GROUP = "segsuite.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps plugin discovery cheap
    import typer
    from torch import nn

    from .domain import Domain

ModelFactory = Callable[..., "nn.Module"]
"""``factory(in_channels, num_classes, spatial_dims=2, **options) -> nn.Module``."""


@hookspec
def segsuite_domains() -> "list[Domain]":
    """Return the application domains this plugin provides.

    Collecting: the results of all plugins are concatenated. Domain names must be unique
    across plugins; a later plugin that reuses a name is skipped with a warning (built-ins
    load first, so a third party cannot silently replace ``medical``).
    """


@hookspec
def segsuite_models() -> "Mapping[str, ModelFactory]":
    """Return extra architectures as ``{name: factory}``.

    Collecting: names join the core model registry; a name the core or an earlier plugin
    already uses is skipped with a warning. Factories are called as
    ``factory(in_channels, num_classes, spatial_dims=2, **options)`` and must return a
    ``torch.nn.Module`` mapping ``(N, C, *spatial)`` to ``(N, num_classes, *spatial)``; a
    ``segsuite_stride`` attribute on the module makes the core pad inputs to a multiple of it.
    Import torch inside the factory, not at module level.
    """


@hookspec
def segsuite_cli(app: "typer.Typer") -> None:
    """Add commands or sub-apps to the ``segsuite`` command line.

    Called once with the root typer app before the CLI is built; use
    ``app.command("name")(func)`` or ``app.add_typer(sub, name="name")``. Import heavy
    libraries inside the command functions. A command whose name is already taken is
    removed again with a warning.
    """


def hook_names() -> list[str]:
    return [n for n, v in globals().items() if n.startswith("segsuite_") and callable(v)]


