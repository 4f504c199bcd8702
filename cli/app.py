"""The root typer app, its error handling and the plugin hook-up."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from segsuite.core.errors import SegsuiteError

_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def debug_enabled(ctx: click.Context | None = None) -> bool:
    if os.environ.get("SEGSUITE_DEBUG", "") not in ("", "0"):
        return True
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("debug"))


class SegsuiteGroup(TyperGroup):
    """Turns errors a user can cause into one line on stderr and an exit code.

    ``SegsuiteError`` -> exit 2 (``NotImplementedYet`` -> 3); missing/unwritable files
    -> exit 2; everything else is a bug and keeps its traceback. ``--debug`` re-raises.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SegsuiteError as exc:
            if debug_enabled(ctx):
                raise
            click.echo(f"segsuite: error: {_one_line(str(exc))}", err=True)
            ctx.exit(getattr(exc, "exit_code", 2))
        except _FILE_ERRORS as exc:
            if debug_enabled(ctx):
                raise
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            click.echo(f"segsuite: error: {where}{_one_line(exc.strerror or str(exc))}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("segsuite: interrupted", err=True)
            ctx.exit(130)


def _version_callback(value: bool) -> None:
    if value:
        from segsuite.core import __version__

        typer.echo(f"segsuite {__version__}")
        raise typer.Exit()


def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    """segsuite: semantic segmentation for driving scenes, medical volumes, industrial parts and satellite tiles.

    One core (models, losses, trainer, metrics, sliding-window inference) and a plugin per
    domain. Run `segsuite plugins` to see the installed domains.
    """


def create_app() -> typer.Typer:
    """The root app with the core commands (plugins add theirs afterwards)."""
    from . import commands

    app = typer.Typer(
        cls=SegsuiteGroup,
        name="segsuite",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    commands.register(app)
    return app


def command_names(app: typer.Typer) -> set[str]:
    from segsuite.core.plugins import registered_name

    return {registered_name(e) for e in [*app.registered_commands, *app.registered_groups]}


def build_cli(registry: Any = None) -> click.Command:
    """The click command for the whole CLI, with every plugin's commands added."""
    from segsuite.core.plugins import get_registry, set_registry

    if registry is None:
        registry = get_registry()
    else:
        set_registry(registry)
    from .run import build_run_app

    app = create_app()
    app.add_typer(build_run_app(registry), name="run")
    registry.extend_cli(app, reserved=lambda: command_names(app))
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    from segsuite.core.plugins import PluginWarning, get_registry

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        registry = get_registry()
        cli = build_cli(registry)
        registry.domains  # noqa: B018 - collect now so broken domain hooks are reported up front
    for w in caught:
        if issubclass(w.category, PluginWarning):
            print(f"segsuite: warning: {_one_line(str(w.message))}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    default_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings API
        # segsuite's own warnings (unknown label ids, plugin problems) are user-facing: one line each
        if getattr(category, "__module__", "").startswith("segsuite."):
            print(f"segsuite: warning: {_one_line(str(message))}", file=sys.stderr)
        else:
            default_show(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        cli.main(args=argv, prog_name="segsuite", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
