"""Your own methods, neurons and energy models on the command line: plugin modules.

A plugin is an ordinary module that registers things when it is imported
(``@neuroq.training.register("qif")``, :func:`neuroq.energy.register_energy_model` ...).  Every
``neuroq`` command imports, before it builds its options (so a registered method is a ``--method``
choice and its ``Config`` fields are options):

1. the entry points of the group ``neuroq.plugins`` of the installed distributions (each names a
   module, ``qif = mypkg.qif`` in ``[options.entry_points]``; the module is imported);
2. the modules of the environment variable ``NEUROQ_IMPORT`` (comma-separated);
3. the modules given with ``--import MODULE`` (repeatable); the command passes them on to the
   processes it starts (``neuroq compare``) through ``NEUROQ_IMPORT``.

The method registry (:func:`neuroq.training.methods.available`, ``method_class``) imports the first
two itself, once per process, so the plugins are there in Python and in ``compare``'s workers too.
A plugin that fails to import is a :class:`PluginError` whose one-line message names it.
"""
from __future__ import annotations

import importlib
import os

#: the entry-point group of neuroq plugins
GROUP = "neuroq.plugins"
#: the environment variable naming plugin modules (comma-separated)
ENV = "NEUROQ_IMPORT"

_state = None  # None: the default plugins are not loaded yet; "loading"; "done"


class PluginError(ImportError):
    """A plugin module that could not be imported; the message (one line) names it and says why."""


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def import_module(name: str, origin: str = "--import"):
    """Import the plugin module ``name`` (``origin`` says where it was named, for the error); returns it.
    :class:`PluginError` if it cannot be imported or raises while it is."""
    name = str(name).strip()
    if not name:
        raise PluginError(f"{origin}: empty module name")
    try:
        return importlib.import_module(name)
    except PluginError:
        raise
    except Exception as e:
        hint = ""
        if isinstance(e, ModuleNotFoundError) and e.name and (name == e.name or name.startswith(e.name + ".")):
            hint = " (is the folder that holds it on the Python path, e.g. in PYTHONPATH?)"
        raise PluginError(f"{origin} {name}: importing it failed: {_why(e)}{hint}") from e


def entry_points() -> list:
    """The entry points of the group :data:`GROUP` of the installed distributions (sorted by name, each once)."""
    from importlib.metadata import entry_points as _eps

    seen, out = set(), []
    for ep in sorted(_eps(group=GROUP), key=lambda ep: (ep.name, ep.value)):
        if (ep.name, ep.value) not in seen:
            seen.add((ep.name, ep.value))
            out.append(ep)
    return out


def load_entry_points() -> list[str]:
    """Load every entry point of :data:`GROUP` (importing the module it names); returns their names.
    :class:`PluginError` naming the plugin and its distribution if one fails."""
    names = []
    for ep in entry_points():
        dist = getattr(ep, "dist", None)
        dist = f"{dist.name} {dist.version}" if dist is not None else ""
        try:
            ep.load()
        except Exception as e:
            of = f" of {dist}" if dist else ""
            raise PluginError(f"plugin {ep.name!r} (entry point '{ep.name} = {ep.value}'{of}, group {GROUP}) failed to "
                              f"load: {_why(e)}; fix it or uninstall {dist or 'it'}") from e
        names.append(ep.name)
    return names


def env_modules() -> list[str]:
    """The modules named by the environment variable :data:`ENV` (comma-separated)."""
    return [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]


def load_default() -> None:
    """Import the entry-point plugins and the :data:`ENV` modules, once per process (a failure is raised, and
    the next call tries again)."""
    global _state
    if _state is not None:  # done, or being done further up this call stack (a plugin that asks the registry)
        return
    _state = "loading"
    try:
        load_entry_points()
        for name in env_modules():
            import_module(name, f"{ENV}:")
    except BaseException:
        _state = None
        raise
    _state = "done"
