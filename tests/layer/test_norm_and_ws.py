"""Normalizations and weight standardization on the edge cases of issue 15."""
import pytest
import torch

from neuroq.layer import LayerBatchNorm1d, LayerBatchNorm2d, PSPNorm1d, PSPNorm2d, ScaledWSConv2d, standardize_weight


@pytest.mark.parametrize("make,shape", [
    (lambda: PSPNorm2d(3), (0, 3, 4, 4)), (lambda: PSPNorm1d(3, step_mode="m"), (2, 0, 3)),
    (lambda: LayerBatchNorm2d(3), (0, 3, 4, 4)), (lambda: LayerBatchNorm1d(3, reading="b"), (0, 3)),
])
def test_empty_batch_leaves_running_statistics_alone(make, shape):
    norm = make().train()
    norm(torch.randn((4,) + shape[1:]) if shape[0] == 0 else torch.randn((shape[0], 4) + shape[2:]))
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    out = norm(torch.randn(shape))
    assert out.shape == shape
    for k, v in norm.state_dict().items():
        assert torch.equal(v, before[k]), k  # no NaN (the statistics of an empty batch), no count


def test_weight_standardization_needs_a_fan_in():
    with pytest.raises(ValueError, match="fan-in"):
        standardize_weight(torch.randn(4, 1))
    with pytest.raises(ValueError, match="fan-in"):
        ScaledWSConv2d(1, 4, 1)
    with pytest.raises(ValueError, match="eps must be > 0"):
        ScaledWSConv2d(2, 4, 3, eps=-1e-4)
