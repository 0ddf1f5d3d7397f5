"""neuroq.quant.integer: the MaQD integer export (int32 weights, norms folded into the scales) computes
exactly what the fake-quantized network computes, and a perturbed export does not."""
import pytest
import torch
import torch.nn as nn

from neuroq import quant as Q
from neuroq.models import maqd_cnn


@pytest.fixture
def one_thread():
    """Training loops are far faster on one thread on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("w_states,a_states", [(3, 2), (4, 3), (16, 16)])
def test_exported_integer_inference_equals_fake_quantized(w_states, a_states, one_thread):
    torch.manual_seed(2)
    model = maqd_cnn((1, 8, 8), 10, w_states, a_states, channels=(6, 8))
    x = torch.rand(1, 24, 1, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    y = torch.randint(0, 10, (24,))
    for _ in range(5):  # move weights, LBN affine and running statistics away from their init
        opt.zero_grad()
        nn.functional.cross_entropy(model(x)[0], y).backward()
        opt.step()
    model = model.double()
    xd = x.double()
    res = Q.check_export(model, xd, atol=1e-9, rtol=1e-9)
    assert res["ok"], res
    assert res["argmax_agreement"] == 1.0
    ex = Q.export(model)
    for name, rec in ex.items():
        assert torch.unique(rec["int_weight"]).numel() <= w_states
        assert rec["int_weight"].dtype == torch.int32
    # LBNs were folded into the conv scales; the layers after QuantAct received integers
    assert all(rec["folded_norm"] for rec in ex.values() if rec["kind"] == "conv2d")
    ints = res["integer_inputs"]
    assert list(ints.values())[1:] == [True] * (len(ints) - 1)
    # the comparison is not vacuous: a perturbed integer weight changes the output
    first = next(iter(ex))
    ex[first]["int_weight"] = ex[first]["int_weight"].clone()
    ex[first]["int_weight"][0].fill_(0)
    model.eval()
    out_bad, _ = Q.integer_forward(model, ex, xd)
    assert not torch.allclose(out_bad, model(xd), atol=1e-9)
