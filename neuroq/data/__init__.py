"""Datasets, spike encoders and minibatching (see :mod:`neuroq.data.datasets` and docs/data.md)."""
from .batches import batches, num_batches  # noqa: F401
from .datasets import (  # noqa: F401
    ArrayDataset, MissingPackageError, TaskData, check_dataset, dataset_names, from_datasets, load_dataset,
    parse_spec, read_idx, register_dataset,
)
from .encode import ENCODINGS, encode  # noqa: F401
from .sequences import image_to_sequence, permutation, sequential_mnist  # noqa: F401
from .vision import cifar10  # noqa: F401
from .events import nmnist  # noqa: F401
from .audio import fsdd, log_mel  # noqa: F401
