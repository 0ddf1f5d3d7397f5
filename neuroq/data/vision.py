r"""Image datasets read through torchvision: CIFAR-10 (``--dataset cifar10``).

CIFAR-10 (Krizhevsky, 2009): 50000 training and 10000 test colour images ``[3, 32, 32]``, 10 classes.
torchvision reads its python batches (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
``batches.meta``, checking their MD5s) and keeps them as uint8 (150 MB); each sample is converted when
it is read, so the float images are never materialised:

.. math:: x_c = \frac{u_c / 255 - \mu_c}{\sigma_c},

with the training set's per-channel mean :math:`\mu = (0.4914, 0.4822, 0.4465)` and standard deviation
:math:`\sigma = (0.2470, 0.2435, 0.2616)` (``normalize=True``, the default; ``normalize=False`` keeps
:math:`u/255 \in [0, 1]`, which ``--encoding rate`` needs).  ``augment=True`` adds the usual training
augmentation (random 32x32 crop of the image padded by 4, random horizontal flip); it draws from torch's
global generator, which the loop seeds every epoch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .._validate import check_bool
from .datasets import TaskData, register_dataset, require, undo_on_failure

#: per-channel mean and standard deviation of the CIFAR-10 training images (scaled to [0, 1])
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_FOLDER = "cifar-10-batches-py"


def cifar10_transform(normalize: bool = True, augment: bool = False):
    """The torchvision transform of one CIFAR-10 image (module docstring): PIL image -> float ``[3, 32, 32]``."""
    T = require("torchvision", "dataset 'cifar10'", pip="'neuroq[data]'").transforms
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    steps.append(T.ToTensor())
    if normalize:
        steps.append(T.Normalize(CIFAR10_MEAN, CIFAR10_STD))
    return T.Compose(steps)


def cifar10(data_dir: Optional[str] = None, download: bool = True, normalize: bool = True,
            augment: bool = False) -> TaskData:
    """CIFAR-10 through ``torchvision.datasets.CIFAR10`` (module docstring): a :class:`TaskData` of images
    ``[3, 32, 32]``, 10 classes, read lazily.

    Args:
        data_dir: the folder holding ``cifar-10-batches-py/`` (or that folder itself); ``None``:
            ``~/.cache/neuroq/cifar10``.
        download: let torchvision download it (163 MB) when missing.
        normalize: per-channel standardisation with the training set's mean and std.
        augment: random crop (padding 4) and horizontal flip of the training images.

    Example::

        data = cifar10("~/data", download=True)     # or load_dataset("cifar10?augment=1", "~/data")
        x, y = data.train[0]                        # x: [3, 32, 32] float32
    """
    check_bool("normalize", normalize)
    check_bool("augment", augment)
    tv = require("torchvision", "dataset 'cifar10'", pip="'neuroq[data]'")
    root = Path(data_dir).expanduser() if data_dir else Path.home() / ".cache" / "neuroq" / "cifar10"
    if root.name == _FOLDER:
        root = root.parent
    splits = {}
    for train in (True, False):
        tf = cifar10_transform(normalize, augment and train)
        try:
            with undo_on_failure(root):  # a failed download leaves no folder or partial file behind
                splits[train] = tv.datasets.CIFAR10(str(root), train=train, transform=tf, download=download)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            raise FileNotFoundError(f"dataset 'cifar10': {str(root / _FOLDER)!r} is missing or corrupted ({e}); pass "
                                    f"--data-dir with the folder holding {_FOLDER}/ (data_batch_1..5, test_batch, "
                                    "batches.meta) or allow the download") from None
        except Exception as e:  # no network, a proxy, a full disk ...
            if isinstance(e, (OSError, ValueError)) and not download:
                raise
            raise FileNotFoundError(f"dataset 'cifar10': no {_FOLDER}/ in {str(root)!r} and the download failed "
                                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); pass "
                                    f"--data-dir with the folder holding {_FOLDER}/") from None
    meta = dict(normalize=normalize, augment=augment)
    if normalize:
        meta.update(mean=list(CIFAR10_MEAN), std=list(CIFAR10_STD))
    return TaskData("cifar10", splits[True], splits[False], 10, (3, 32, 32), meta=meta)


register_dataset("cifar10", cifar10)
