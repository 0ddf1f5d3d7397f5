"""neuroq: energy-efficient spiking and quantized networks on SpikingJelly."""
from ._sj import clone_net, invalidate_reset_cache, reset_net  # noqa: F401

__version__ = "0.1.0"
