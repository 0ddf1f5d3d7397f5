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


def _small():
    torch.manual_seed(0)
    return maqd_cnn((1, 8, 8), 10, 3, 2, channels=(6, 8)).eval(), torch.rand(1, 4, 1, 8, 8)


_NAN_X = torch.full((1, 4, 1, 8, 8), float("nan"))


@pytest.mark.parametrize("call,exc,match", [
    (lambda m, x: Q.export("not a model"), TypeError, "model must be a torch.nn.Module, got str"),
    (lambda m, x: Q.export(m, fold_norm="yes"), TypeError, "fold_norm must be True or False"),
    (lambda m, x: Q.integer_forward(m, {}, x), ValueError, "exported is empty"),
    (lambda m, x: Q.integer_forward(m, [], x), TypeError, "exported must be the dict"),
    (lambda m, x: Q.integer_forward(m, {"0": {"kind": "linear"}}, x), ValueError,
     r"exported\['0'\] must be a layer record"),
    (lambda m, x: Q.integer_forward(m, Q.export(m), _NAN_X), ValueError, "x holds .* NaN or infinite"),
    (lambda m, x: Q.integer_forward(m, Q.export(m), x.long()), TypeError, "x must be a floating-point tensor"),
    (lambda m, x: Q.integer_forward("m", Q.export(m), x), TypeError, "model must be a torch.nn.Module"),
    (lambda m, x: Q.check_export(m, x, atol=float("nan")), ValueError, "atol must be a finite real number"),
    (lambda m, x: Q.check_export(m, x, rtol=-1), ValueError, "rtol must be >= 0"),
    (lambda m, x: Q.check_export(m, x, atol="0"), TypeError, "atol must be a real number"),
    (lambda m, x: Q.check_export(m, _NAN_X), ValueError, "x holds .* NaN or infinite"),
    (lambda m, x: Q.check_export(m, x, fold_norm=1), TypeError, "fold_norm must be True or False"),
    (lambda m, x: Q.check_export(None, x), TypeError, "model must be a torch.nn.Module"),
])
def test_refuses_bad_input(call, exc, match):
    model, x = _small()
    with pytest.raises(exc, match=match):
        call(model, x)


def test_a_folded_norm_missing_from_the_model_is_named():
    model, x = _small()
    ex = Q.export(model)
    first = next(iter(ex))
    ex[first]["folded_norm"] = "no.such.norm"
    with pytest.raises(ValueError, match="no.such.norm"):
        Q.integer_forward(model, ex, x)
