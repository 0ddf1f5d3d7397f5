"""Energy accounting: the meter (:mod:`.meter`), its counting rules (:mod:`.rules`) and the
differentiable penalties used in training (:mod:`.penalty`)."""
from .meter import EnergyMeter  # noqa: F401
from .models import (  # noqa: F401
    COMPONENTS, EnergyModel, ModelInfo, describe, energy_models, get_energy_model, register_energy_model,
)
from .penalty import PENALTY_KINDS, RatePenalty, SpikePenalty, SynapticPenalty, make_penalty  # noqa: F401
from .rules import (  # noqa: F401
    CONV_FANOUTS, E_AC_PJ, E_MAC_PJ, conv_macs, conv_sops, is_spike_tensor, linear_macs, linear_sops,
    register_synaptic, synaptic_fns,
)
