"""Datasets, spike encoders and minibatching (see :mod:`neuroq.data.datasets`)."""
from .batches import batches, num_batches  # noqa: F401
from .datasets import (  # noqa: F401
    ArrayDataset, TaskData, dataset_names, load_dataset, read_idx, register_dataset,
)
from .encode import ENCODINGS, encode  # noqa: F401
from .sequences import image_to_sequence, permutation, sequential_mnist  # noqa: F401
