"""Normalizations that fold into the preceding layer at inference: PSPN, Layer-Batch Norm."""
from .fold import effective_weight, fold, folded_parameters, inference_affine, is_foldable  # noqa: F401
from .lbn import LayerBatchNorm1d, LayerBatchNorm2d  # noqa: F401
from .psp_norm import PSPNorm1d, PSPNorm2d  # noqa: F401
from .stats import recalibrate  # noqa: F401
