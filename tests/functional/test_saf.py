"""neuroq.functional.saf: the accumulation, its inverse and the bias scale c_t against the geometric sum
(Saiin et al., TMLR 2024, arXiv 2310.02772)."""
import pytest
import torch

from neuroq.functional import saf as FS


def test_bias_scale():
    for tau in (2.0, 3.0, 7.5):
        lam = 1 - 1 / tau
        for t in range(1, 9):
            assert FS.bias_scale(t, tau) == pytest.approx((1 - lam ** t) / (1 - lam), rel=1e-12)
    x = torch.rand(5, 3)
    torch.testing.assert_close(FS.deaccumulate(FS.accumulate(x, 2.0), 2.0), x)
