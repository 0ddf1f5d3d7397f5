"""neuroq: energy-efficient spiking and quantized networks on SpikingJelly.

``import neuroq`` is light; its subpackages (``neuroq.neuron``, ``neuroq.layer``, ``neuroq.viz`` ...) load on
first use, and ``neuroq.load_run(path)`` rebuilds a trained run (``run.predict(x)`` gives class scores).
``neuroq.set_checks(True)`` turns on the debug checks of non-finite values in every neuroq module
(:mod:`neuroq.checks` states the policy)."""
import importlib
import os

from ._sj import clone_net, invalidate_reset_cache, reset_net  # noqa: F401

__version__ = "0.1.0"

if os.environ.get("NEUROQ_CHECKS", "").strip() not in ("", "0"):
    from . import checks  # noqa: F401  (turns the debug checks on)

_SUBPACKAGES = ("bayes", "checks", "convert", "data", "energy", "functional", "io", "layer", "models", "neuron", "nir", "ops",
                "plugins", "prune", "quant", "surrogate", "training", "viz")


def __getattr__(name):
    if name in ("set_checks", "checks_enabled"):
        return getattr(importlib.import_module(f"{__name__}.checks"), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "load_run":
        from .training.checkpoint import load_run

        return load_run
    raise AttributeError(f"module 'neuroq' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES) + ["load_run", "set_checks", "checks_enabled"])
