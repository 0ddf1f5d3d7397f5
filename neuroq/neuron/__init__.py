"""Spiking neurons.  Each subclasses :class:`BaseNode` (a SpikingJelly ``MemoryModule``)."""
from .base import BaseNode, Neuron, is_neuron  # noqa: F401
from .lif import IFNode, LIFNode  # noqa: F401
from .s2nn import S2NNNode  # noqa: F401
from .saf import SAFNode  # noqa: F401
from .ottt import OnlineLIFNode  # noqa: F401
from .hybrid import SpikingActivation, SpikingSchedule  # noqa: F401
