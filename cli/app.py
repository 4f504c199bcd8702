"""The root typer app, its error handling and the plugin hook-up."""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import sys
import warnings
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup, TyperOption

from segsuite.core.errors import SegsuiteError

try:  # recent typer parses with its own copy of click, whose exceptions are not `click`'s
    from typer._click import exceptions as _parser_errors
except ImportError:  # older typer runs on click itself
    from click import exceptions as _parser_errors

UsageError, NoSuchOption = _parser_errors.UsageError, _parser_errors.NoSuchOption
NoArgsIsHelpError = getattr(_parser_errors, "NoArgsIsHelpError", ())  # `segsuite` alone prints the help

_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def debug_enabled(ctx: click.Context | None = None) -> bool:
    if os.environ.get("SEGSUITE_DEBUG", "") not in ("", "0"):
        return True
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("debug"))


def usage_line(exc: UsageError) -> str:
    """Click's usage error as our one line: what is wrong, where, and where the help is.

    Click prints a four-line block (usage, hint, blank line, error); a user reading a batch
    log wants the option and the command in one sentence.
    """
    where = exc.ctx.command_path if exc.ctx is not None else "segsuite"
    if isinstance(exc, NoSuchOption):
        text = f"no such option {exc.option_name} for `{where}`"
        if exc.possibilities:
            text += f" (did you mean {' or '.join(sorted(exc.possibilities))}?)"
    else:
        text = _one_line(exc.format_message()).rstrip(".")
        if text.startswith("No such command"):
            text += f" for `{where}`"
    return f"{text}; see `{where} --help`"


class SegsuiteGroup(TyperGroup):
    """Turns errors a user can cause into one line on stderr and an exit code.

    ``SegsuiteError`` -> exit 2 (``NotImplementedYet`` -> 3); missing/unwritable files
    -> exit 2; usage errors (unknown option or command, a bad or missing value) -> exit 2;
    everything else is a bug and keeps its traceback. ``--debug`` re-raises.
    """

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:  # the root's own options (`segsuite --bogus`) are parsed here, outside invoke
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as exc:
            if isinstance(exc, NoArgsIsHelpError):
                raise
            click.echo(f"segsuite: error: {usage_line(exc)}", err=True)
            raise typer.Exit(2) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            if isinstance(exc, NoArgsIsHelpError):
                raise
            click.echo(f"segsuite: error: {usage_line(exc)}", err=True)
            ctx.exit(2)
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
    command = typer.main.get_command(app)
    check_device_options(command)
    return command


def check_device_options(command: click.Command) -> None:
    """Give every ``--device`` option in the tree (core and plugin commands alike) the one
    device parser, so ``--device tpu`` is refused while the command line is read, before any
    model is loaded or any folder is made."""
    from segsuite.core.devices import parse_device

    for param in command.params:
        if param.name == "device" and isinstance(param, TyperOption):
            given = param.callback

            def check(ctx: Any, param: Any, value: Any, _given: Any = given) -> Any:
                value = parse_device(value) if value is not None else None
                return _given(ctx, param, value) if _given is not None else value

            param.callback = check
    for sub in getattr(command, "commands", {}).values():
        check_device_options(sub)


def quiet_native_libraries() -> None:
    """Keep OpenCV's and FFmpeg's own log lines (``[ WARN:0@0.1] ...``, ``[mov,mp4 @ 0x..] moov
    atom not found``) off the terminal: the errors they describe reach the user as our one line.

    Both read these variables when their logging starts (OpenCV at import, its FFmpeg backend on
    the first video), so they are set before the commands import cv2; a user's own setting wins.
    ``--debug`` leaves them alone.
    """
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "cv2" in sys.modules:  # already imported (e.g. by a plugin at discovery)
        with contextlib.suppress(Exception):
            import cv2.utils.logging as cv_logging

            cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)


def _origin(filename: str, lineno: int) -> str:
    """Where a warning came from, short: ``numpy/lib/_nanfunctions_impl.py:1234``, ``core/metrics.py:88``."""
    path = str(filename).replace(os.sep, "/")
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))).replace(os.sep, "/") + "/"
    if "/site-packages/" in path:
        path = path.rsplit("/site-packages/", 1)[1]
    elif path.startswith(package_root):
        path = path[len(package_root):]
    else:
        path = os.path.basename(path)
    return f"{path}:{lineno}"


def show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                 line: str | None = None) -> None:
    """``warnings.showwarning`` for the CLI: every warning is one ``segsuite: warning:`` line.

    segsuite's own warnings (unknown label ids, plugin problems) are written for users and
    printed as they are; a library's (numpy, pyogrio, nibabel...) gets its category and origin,
    instead of Python's two-line format with a source line.
    """
    text = _one_line(str(message))
    if not getattr(category, "__module__", "").startswith("segsuite."):
        text += f" ({category.__name__} at {_origin(filename, lineno)})"
    print(f"segsuite: warning: {text}", file=sys.stderr if file is None else file)


class _LibraryLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"segsuite: warning: {record.name}: {_one_line(record.getMessage())}"


class _OncePerMessage(logging.Filter):
    """GDAL repeats a complaint for every block it reads: say each distinct one once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _route_library_logging() -> None:
    """Libraries that log (rasterio passes GDAL's complaints to ``logging``) would otherwise reach
    stderr through Python's bare last-resort handler; give them our one-line prefix."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.setFormatter(_LibraryLogFormatter())
        handler.addFilter(_OncePerMessage())
        root.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    # The interpreter's garbage collections at exit walk every object PyTorch created: 0.2 s of
    # each command (measured, of 0.35 s of shutdown). They run after the exit handlers, when every
    # output is written and closed, so what is alive then is frozen out of them. Objects freed
    # by reference counting are still finalised as usual.
    atexit.register(gc.freeze)
    args = sys.argv[1:] if argv is None else list(argv)
    if not (debug_enabled() or "--debug" in args):
        quiet_native_libraries()
    from segsuite.core.plugins import PluginWarning, get_registry

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        registry = get_registry()
        cli = build_cli(registry)
        registry.domains  # noqa: B018 - collect now so broken domain hooks are reported up front
    for w in caught:
        show_warning(w.message, w.category, w.filename, w.lineno)
    warnings.showwarning = show_warning
    _route_library_logging()
    try:
        cli.main(args=args, prog_name="segsuite", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
