"""MaQD quantization in one place: the scaled round-clip functions (:mod:`neuroq.functional.quant`), the
quantizer parts and quantized layers (:mod:`neuroq.layer.quant`), and the integer export of a trained
model (:mod:`neuroq.quant.integer`)."""
from ..functional.quant import gaussian_mse_step, quantize_activation, quantize_weight, round_clip  # noqa: F401
from ..layer.quant import ActQuantizer, QuantAct, QuantConv2d, QuantLinear, WeightQuantizer  # noqa: F401
from .integer import check_export, export, integer_forward  # noqa: F401

__all__ = [
    "gaussian_mse_step", "quantize_activation", "quantize_weight", "round_clip", "ActQuantizer", "QuantAct",
    "QuantConv2d", "QuantLinear", "WeightQuantizer", "check_export", "export", "integer_forward",
]
