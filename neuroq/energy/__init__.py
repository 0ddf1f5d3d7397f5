"""Energy accounting: the meter (:mod:`.meter`), its counting rules (:mod:`.rules`), the energy models that
price what it counts (:mod:`.models`) and the differentiable penalties used in training (:mod:`.penalty`)."""
from .meter import EnergyMeter  # noqa: F401
from .models import (  # noqa: F401
    COMPONENTS, EnergyModel, ModelInfo, describe, energy_models, get_energy_model, register_energy_model,
)
from .penalty import (  # noqa: F401
    PENALTY_KINDS, ModelPenalty, RatePenalty, SpikePenalty, SynapticPenalty, make_penalty, penalty_kinds,
)
from .rules import (  # noqa: F401
    CONV_FANOUTS, E_AC_PJ, E_MAC_PJ, conv_macs, conv_sops, is_spike_tensor, linear_macs, linear_sops,
    register_synaptic, synaptic_fns,
)
