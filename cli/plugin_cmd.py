"""``segsuite plugin new``: create an installable plugin package for a new domain.

The package is rendered from the ``.tmpl`` files under ``cli/templates/plugin/`` (shipped
as package data) with :class:`string.Template`: ``$name`` is the domain name, ``$module``
the import name, ``$dist`` the distribution name. ``package/`` becomes the module folder
and ``gitignore`` becomes ``.gitignore``. Everything is written into a hidden temporary
folder beside the target and renamed into place at the end, so a failure never leaves a
half-written package behind.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import string
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer

from segsuite.core.errors import InputFileError, SegsuiteError

app = typer.Typer(help="Plugin authoring: create a package that adds a new domain.", no_args_is_help=True)

NAME_RULE = re.compile(r"^[a-z](?:[a-z0-9_-]*[a-z0-9])?$")
"""The rule ``Domain`` applies to its name (core/domain.py), ending in a letter or digit: the
name also makes the distribution ``segsuite-NAME``, and a package name (PEP 508) cannot end
in ``-`` or ``_``."""
RESERVED = ("driving", "industrial", "medical", "satellite")
"""Built-in domains: a plugin reusing one of these names would be skipped at load time."""


def plugin_names(name: str) -> dict[str, str]:
    """The substitutions for ``name``; a one-line error when it is not a usable domain name."""
    if not NAME_RULE.match(name):
        raise SegsuiteError(f"plugin name {name!r}: use lower-case letters, digits, '-' or '_', starting with a letter "
                            "and ending in a letter or digit (it becomes the domain name and the package name "
                            "segsuite-NAME, e.g. 'microscopy' or 'road-marks')")
    if name in RESERVED:
        raise SegsuiteError(f"plugin name {name!r}: a built-in domain already has this name; choose another")
    from segsuite.core import __version__

    release = re.match(r"^(\d+)\.(\d+)", __version__)
    module = "segsuite_" + name.replace("-", "_")
    return {
        "name": name,
        "module": module,
        "dist": f"segsuite-{name}",
        "title": name.replace("-", " ").replace("_", " ").capitalize(),
        "segsuite_requirement": f"segsuite>={release.group(1)}.{release.group(2)}" if release else "segsuite",
    }


def _template_files() -> list[tuple[str, str]]:
    """``(relative path, template text)`` for every ``.tmpl`` file, in a stable order."""
    root = resources.files("segsuite.cli").joinpath("templates", "plugin")
    found: list[tuple[str, str]] = []

    def walk(node, prefix: str) -> None:  # noqa: ANN001 - a Traversable
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".tmpl"):
                found.append((prefix + child.name, child.read_text(encoding="utf-8")))

    walk(root, "")
    if not found:
        raise SegsuiteError(f"no plugin templates found in {root}; the segsuite installation is incomplete")
    return found


def render(values: dict[str, str]) -> dict[str, str]:
    """The files of the new package: ``{relative path: text}``."""
    files: dict[str, str] = {}
    for rel, text in _template_files():
        target = rel.removesuffix(".tmpl")
        parts = target.split("/")
        if parts[0] == "package":
            parts[0] = values["module"]
        if parts[-1] == "gitignore":
            parts[-1] = ".gitignore"
        try:
            files["/".join(parts)] = string.Template(text).substitute(values)
        except (KeyError, ValueError) as exc:  # a template bug, not a user error
            raise RuntimeError(f"plugin template {rel}: bad placeholder ({exc})") from exc
    return files


def _write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def scaffold_plugin(name: str, target: Path | None = None) -> Path:
    """Create the plugin package for domain ``name`` in ``target`` (default ``./segsuite-NAME``).

    ``target`` may be missing or an empty folder. Returns the package folder.
    """
    values = plugin_names(name)
    target = Path(target) if target is not None else Path(values["dist"])
    target = target.expanduser().absolute()
    if target.exists():
        if not target.is_dir():
            raise InputFileError(f"{target}: exists and is not a folder; choose another --dir")
        if any(target.iterdir()):
            raise InputFileError(f"{target}: folder exists and is not empty; choose another --dir or empty it")
    files = render(values)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the package gets the usual permissions
        for rel, text in files.items():
            _write_file(staging / rel, text)
        if target.exists():
            target.rmdir()  # empty (checked above); rename cannot replace a folder everywhere
        os.rename(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Domain name: lower-case letters, digits, '-' or '_'")],
    target: Annotated[Optional[Path], typer.Option("--dir", help="Folder for the package; must be new or empty [./segsuite-NAME]")] = None,
) -> None:
    """Create an installable plugin package for a new domain: hooks, class map, reader/writer,
    sample-data generator, default model, a pipeline with one run option, tests and a README."""
    folder = scaffold_plugin(name, target)
    values = plugin_names(name)
    where = shlex.quote(str(folder))
    typer.echo(f"created {folder}  (distribution {values['dist']}, module {values['module']}, domain {name})")
    typer.echo("next steps:")
    for line, note in (
        (f"pip install -e {where}", "registers the segsuite.plugins entry point"),
        ("segsuite plugins", f"lists {name}"),
        (f"segsuite sample {name} --output {name}-data", "writes labelled sample images"),
        (f"segsuite train {name} --data {name}-data --epochs 20 --lr 3e-3 --output runs/{name}", "trains the default model"),
        (f"segsuite run {name} --input {name}-data/images --model runs/{name}/last.safetensors --output {name}-results", ""),
        (f"pytest {shlex.quote(str(folder / 'tests'))}", "the plugin's own tests"),
    ):
        typer.echo(f"  {line}" + (f"    # {note}" if note else ""))
