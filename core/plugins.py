"""Loading plugins and collecting what they contribute.

Built-in plugins are registered by module name, third-party ones through the entry
point group ``segsuite.plugins`` (as pytest does with ``pytest11``). Failures in a
third-party plugin (import error, unknown hook name, a hook that raises, a malformed
contribution) become one-line :class:`PluginWarning` s naming the plugin; a failure in a
built-in plugin is a bug and raises.

Environment switches, modelled on pytest's:

* ``SEGSUITE_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry-point plugins;
* ``SEGSUITE_DISABLE_PLUGINS=name1,name2`` skips the named plugins (built-in or not).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .domain import Domain
from .errors import UnknownNameError

BUILTIN_PLUGINS: dict[str, str] = {
    "driving": "segsuite.plugins.driving.plugin",
    "medical": "segsuite.plugins.medical.plugin",
    "industrial": "segsuite.plugins.industrial.plugin",
    "satellite": "segsuite.plugins.satellite.plugin",
}


class PluginWarning(UserWarning):
    """A third-party plugin could not be used (fully or in part)."""


@dataclass
class PluginInfo:
    name: str
    source: str  # "built-in" or "dist-name version"
    module: str
    domains: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    builtin: bool = False


@dataclass
class PluginFailure:
    name: str
    source: str
    message: str


class PluginRegistry:
    """The plugin manager plus what the plugins contributed, collected once."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.info: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self._domains: dict[str, Domain] | None = None
        self._domain_owner: dict[str, str] = {}
        self._models: dict[str, hookspecs.ModelFactory] | None = None
        self._model_owner: dict[str, str] = {}

    # -- failure handling ---------------------------------------------------------
    def _fail(self, name: str, message: str) -> None:
        info = self.info.get(name)
        source = info.source if info else "?"
        if info is not None and info.builtin:
            raise RuntimeError(f"built-in plugin {name!r}: {message}")
        self.failures.append(PluginFailure(name, source, message))
        warnings.warn(f"plugin {name!r} ({source}): {message}", PluginWarning, stacklevel=3)

    def _call_each(self, hook_name: str, **kwargs: Any) -> Iterable[tuple[str, Any]]:
        """Call every implementation of a hook separately so one failure stays local."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order (pluggy calls LIFO)
            pname = self.pm.get_name(impl.plugin) or "?"
            args = {k: v for k, v in kwargs.items() if k in impl.argnames}
            try:
                result = impl.function(**args)
            except Exception as exc:  # a plugin bug must not take the host down
                self._fail(pname, f"hook {hook_name} raised {type(exc).__name__}: {exc}")
                continue
            yield pname, result

    # -- contributions ------------------------------------------------------------
    @property
    def domains(self) -> dict[str, Domain]:
        if self._domains is None:
            self._domains = {}
            for pname, result in self._call_each("segsuite_domains"):
                if result is None:
                    continue
                items = [result] if isinstance(result, Domain) else result
                try:
                    items = list(items)
                except TypeError:
                    self._fail(pname, f"segsuite_domains returned {type(result).__name__}, not a list of Domain")
                    continue
                for d in items:
                    if not isinstance(d, Domain):
                        self._fail(pname, f"segsuite_domains returned a {type(d).__name__}, not a Domain")
                    elif d.name in self._domains:
                        self._fail(pname, f"domain {d.name!r} is already provided by plugin {self._domain_owner[d.name]!r}; skipped")
                    else:
                        self._domains[d.name] = d
                        self._domain_owner[d.name] = pname
                        if pname in self.info:
                            self.info[pname].domains.append(d.name)
        return self._domains

    def domain(self, name: str) -> Domain:
        try:
            return self.domains[name]
        except KeyError:
            known = ", ".join(sorted(self.domains)) or "none installed"
            raise UnknownNameError(f"unknown domain {name!r}; available: {known}") from None

    def domain_owner(self, name: str) -> str:
        self.domains  # noqa: B018 - populate
        return self._domain_owner[name]

    def plugin_models(self, reserved: Iterable[str] = ()) -> dict[str, hookspecs.ModelFactory]:
        if self._models is None:
            taken = set(reserved)
            self._models = {}
            for pname, result in self._call_each("segsuite_models"):
                if not result:
                    continue
                if not hasattr(result, "items"):
                    self._fail(pname, f"segsuite_models returned {type(result).__name__}, not a mapping")
                    continue
                for mname, factory in result.items():
                    if not callable(factory):
                        self._fail(pname, f"model {mname!r} is not callable")
                    elif mname in taken or mname in self._models:
                        owner = self._model_owner.get(mname, "the core")
                        self._fail(pname, f"model name {mname!r} is already used by {owner}; skipped")
                    else:
                        self._models[mname] = factory
                        self._model_owner[mname] = pname
                        if pname in self.info:
                            self.info[pname].models.append(mname)
        return self._models

    def extend_cli(self, app: Any, reserved: Callable[[], set[str]]) -> None:
        """Let every plugin add commands to ``app``; attribute and police what each adds."""
        for impl in self.pm.hook.segsuite_cli.get_hookimpls():
            pname = self.pm.get_name(impl.plugin) or "?"
            before_cmds = list(app.registered_commands)
            before_groups = list(app.registered_groups)
            taken = reserved()
            try:
                impl.function(app=app)
            except Exception as exc:
                app.registered_commands[:] = before_cmds
                app.registered_groups[:] = before_groups
                self._fail(pname, f"hook segsuite_cli raised {type(exc).__name__}: {exc}")
                continue
            for kind, registered, before in (("command", app.registered_commands, before_cmds),
                                             ("command group", app.registered_groups, before_groups)):
                for entry in [e for e in registered if e not in before]:
                    name = registered_name(entry)
                    if name in taken:
                        registered.remove(entry)
                        self._fail(pname, f"{kind} {name!r} already exists; skipped")
                    else:
                        taken.add(name)
                        if pname in self.info:
                            self.info[pname].commands.append(name)

    def describe(self) -> dict[str, Any]:
        """Everything ``segsuite plugins --json`` prints."""
        domains = self.domains
        return {
            "plugins": [
                {
                    "name": i.name,
                    "source": i.source,
                    "module": i.module,
                    "builtin": i.builtin,
                    "domains": [domains[d].summary() for d in i.domains],
                    "models": i.models,
                    "commands": i.commands,
                }
                for i in self.info.values()
            ],
            "failures": [{"name": f.name, "source": f.source, "message": f.message} for f in self.failures],
        }


def registered_name(entry: Any) -> str:
    """The name a typer command or sub-app registration will have on the command line."""
    if getattr(entry, "typer_instance", None) is not None:
        return entry.name or entry.typer_instance.info.name or "?"
    return entry.name or entry.callback.__name__.replace("_", "-")


def _disabled() -> set[str]:
    raw = os.environ.get("SEGSUITE_DISABLE_PLUGINS", "")
    return {p.strip() for p in raw.split(",") if p.strip()}


def _register(registry: PluginRegistry, name: str, obj: Any, info: PluginInfo) -> None:
    pm = registry.pm
    registry.info[name] = info
    try:
        pm.register(obj, name=name)
    except Exception as exc:  # pluggy rejects e.g. a bad hookwrapper signature
        registry._fail(name, f"cannot be registered: {exc}")
        registry.info.pop(name, None)
        return
    # Like pytest's check_pending, but per plugin: a misspelt hook disables that plugin only.
    unknown = [
        hname
        for hname, caller in pm.hook.__dict__.items()
        if hname.startswith("segsuite") and not caller.has_spec() and any(i.plugin is obj for i in caller.get_hookimpls())
    ]
    if unknown:
        pm.unregister(obj)
        registry._fail(name, f"implements unknown hook(s) {', '.join(sorted(unknown))}; known: {', '.join(hookspecs.hook_names())}")
        registry.info.pop(name, None)


def load_plugins(*, entry_points: bool | None = None, extra: Iterable[tuple[str, Any]] = ()) -> PluginRegistry:
    """Create the plugin registry: built-ins, entry-point plugins, then ``extra`` objects."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(pm)
    disabled = _disabled()

    for name, module_name in BUILTIN_PLUGINS.items():
        if name in disabled:
            continue
        module = importlib.import_module(module_name)
        _register(registry, name, module, PluginInfo(name, "built-in", module_name, builtin=True))

    if entry_points is None:
        entry_points = os.environ.get("SEGSUITE_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    if entry_points:
        for ep in sorted(metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in disabled or ep.name in registry.info:
                if ep.name in registry.info:
                    warnings.warn(f"plugin {ep.name!r}: name already taken; skipped", PluginWarning, stacklevel=2)
                continue
            dist = getattr(ep, "dist", None)
            source = f"{dist.name} {dist.version}" if dist is not None else "entry point"
            info = PluginInfo(ep.name, source, ep.value)
            registry.info[ep.name] = info
            try:
                obj = ep.load()
            except Exception as exc:
                registry._fail(ep.name, f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
                registry.info.pop(ep.name, None)
                continue
            _register(registry, ep.name, obj, info)

    for name, obj in extra:
        _register(registry, name, obj, PluginInfo(name, "registered in code", getattr(obj, "__name__", repr(obj))))
    return registry


_DEFAULT: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide registry, loaded on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_plugins()
    return _DEFAULT


def set_registry(registry: PluginRegistry | None) -> None:
    """Replace the process-wide registry (tests, embedding applications)."""
    global _DEFAULT
    _DEFAULT = registry
