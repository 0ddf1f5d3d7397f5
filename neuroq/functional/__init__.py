"""Pure functions: the torch reference of each neuron's update (the definition of correct), and the
parameter record of each family that feeds the reference, the fused kernels and the CLI."""
from ._records import field_help  # noqa: F401
from .neuron import (  # noqa: F401
    IFParameters,
    LIFParameters,
    fire,
    hard_or_soft_reset,
    if_charge,
    if_multi_step,
    if_step,
    lif_charge,
    lif_multi_step,
    lif_step,
    multi_step,
)
from .s2nn import S2NNParameters  # noqa: F401
from .saf import SAFParameters, saf_multi_step, saf_step  # noqa: F401
