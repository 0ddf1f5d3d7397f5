"""Structured pruning of recurrent hidden units: spectral pruning (Furuya et al., AISTATS 2022) and baselines."""
from .baselines import magnitude_prune, magnitude_reconstruct_prune, magnitude_scores, random_prune  # noqa: F401
from .spectral import (  # noqa: F401
    HiddenCovariance, PruneReport, SelectionContext, SelectionPath, collect_hidden_covariance, degrees_of_freedom,
    greedy_select, information_losses, path_losses, pivoted_select, prune_units, reconstruction_matrix,
    resolve_keep, spectral_prune,
)
from .surgery import Reconstruction, LayerAdapter, RNNAdapter, SpikingRNNAdapter, adapter_for, register_layer  # noqa: F401
