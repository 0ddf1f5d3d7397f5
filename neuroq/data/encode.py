"""Spike encoders: static input ``[N, ...]`` -> multi-step input ``[T, N, ...]``."""
from __future__ import annotations

from typing import Optional

import torch

from .._validate import check_choice, check_int, check_samples

ENCODINGS = ("direct", "rate")


def encode(x: torch.Tensor, T: int, encoding: str = "direct", generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``[N, ...]`` in [0, 1] -> ``[T, N, ...]``.

    * ``direct``: the analog input repeated at every step (the first layer then does MACs).
    * ``rate``: Bernoulli/Poisson spikes with probability equal to the intensity.

    ``x`` must be a real tensor of finite values with at least one dimension (the batch); NaN or inf is an
    error here, where every training and evaluation batch of an image dataset passes.
    """
    check_int("T", T, ge=1)
    check_choice("encoding", encoding, ENCODINGS)
    check_samples("x", x)
    xs = x.unsqueeze(0).expand(T, *x.shape)
    if encoding == "direct":
        return xs
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"rate encoding needs intensities in [0, 1] (the firing probabilities), got values in "
                             f"[{lo:g}, {hi:g}]" + ("; divide 8-bit images by 255" if hi > 1 else ""))
    if generator is not None and generator.device != x.device:
        u = torch.rand(xs.shape, generator=generator).to(x.device)
    else:
        u = torch.rand(xs.shape, generator=generator, device=x.device)
    return (u < xs).to(x.dtype)
