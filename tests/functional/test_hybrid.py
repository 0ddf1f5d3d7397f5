"""neuroq.functional.hybrid: the bits of activity of integer spike counts against Python's int.bit_length."""
import pytest
import torch

from neuroq.functional import hybrid as FH


def test_bits_of_activity_against_python_int_bit_length():
    g = torch.Generator().manual_seed(5)
    n = torch.randint(-9, 20, (7, 3, 4, 5), generator=g).double()
    n[:, :, 0, 0] = 0                                     # a silent neuron
    n[:, :, 1, 1] = n[:, :, 1, 1].abs()                   # a non-negative one
    per = FH.bits_of_activity(n, sample_dims=2, per_neuron=True)
    flat = n.reshape(-1, 4, 5)
    for i in range(4):
        for j in range(5):
            vals = [int(v) for v in flat[:, i, j]]
            ref = max(abs(v) for v in vals).bit_length() + (1 if min(vals) < 0 else 0)
            assert per[i, j] == ref
    assert FH.bits_of_activity(n) == pytest.approx(float(per.mean()))
    vals = [int(v) for v in n.flatten() if v != 0]
    assert FH.significant_bits(n) == pytest.approx(sum(abs(v).bit_length() for v in vals) / len(vals))
    assert FH.significant_bits(torch.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="sample_dims"):
        FH.bits_of_activity(torch.zeros(3), sample_dims=2)
