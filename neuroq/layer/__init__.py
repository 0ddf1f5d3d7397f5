"""Layers: step-mode containers, weight standardization, normalizations, quantized layers, SAF and OTTT
layers, residual blocks."""
from .container import SeqOp, leaves, make_neuron, run_steps, set_step_mode  # noqa: F401
from .lmu import LMU, LegendreMemory, LMUCell, LMUHiddenCell  # noqa: F401
from .lowpass import Lowpass  # noqa: F401
from .norm import LayerBatchNorm1d, LayerBatchNorm2d, PSPNorm1d, PSPNorm2d, fold  # noqa: F401
from .ottt import OTTTSequential  # noqa: F401
from .recurrent import SpikingRNN  # noqa: F401
from .quant import QuantAct, QuantConv2d, QuantLinear  # noqa: F401
from .residual import PreActBlock  # noqa: F401
from .saf import (  # noqa: F401
    SAFConv2d, SAFInput, SAFLinear, SAFNonLinearError, SAFReadout, SAFSequential, SAFWSConv2d, check_saf_network,
    register_linear_op,
)
from .ws import Scale, ScaledWSConv2d, standardize_weight  # noqa: F401
