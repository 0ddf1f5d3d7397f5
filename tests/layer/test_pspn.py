"""PSPN (second-raw-moment normalization, no centering), pre-activation blocks and deep ResNets."""
import pytest
import torch
import torch.nn as nn

import neuroq
from neuroq.layer import PreActBlock, PSPNorm1d, PSPNorm2d
from neuroq.models import preact_resnet
from neuroq.neuron import LIFNode, S2NNNode


def rms_reference(x, c_axis, weight, eps):
    dims = tuple(d for d in range(x.dim()) if d != c_axis)
    shape = [1] * x.dim()
    shape[c_axis] = -1
    m2 = (x ** 2).mean(dim=dims)
    return x / torch.sqrt(m2 + eps).view(shape) * weight.view(shape), m2


@pytest.mark.parametrize("cls,shape_s", [(PSPNorm2d, (6, 3, 5, 4)), (PSPNorm1d, (6, 3)), (PSPNorm1d, (6, 3, 7))])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_output_is_x_over_rms_times_gamma(cls, shape_s, step_mode):
    torch.manual_seed(0)
    shape = ((4,) + shape_s) if step_mode == "m" else shape_s
    c_axis = 2 if step_mode == "m" else 1
    x = torch.randn(shape, dtype=torch.float64) * 3 + 1.5
    layer = cls(3, eps=1e-5, step_mode=step_mode).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
    y = layer(x)
    ref, _ = rms_reference(x, c_axis, layer.weight.detach(), 1e-5)
    torch.testing.assert_close(y, ref)


def test_statistics_are_shared_over_time_steps():
    """'m' on [T, N, C, H, W] equals 's' on the flattened [T*N, C, H, W] (stats over T, N, H, W)."""
    x = torch.randn(3, 5, 4, 6, 6)
    ym = PSPNorm2d(4, step_mode="m")(x)
    ys = PSPNorm2d(4, step_mode="s")(x.flatten(0, 1)).view_as(x)
    torch.testing.assert_close(ym, ys)
    # and not per time step: scaling one step changes the others' outputs
    x2 = x.clone()
    x2[0] *= 10
    assert not torch.allclose(PSPNorm2d(4, step_mode="m")(x2)[1], ym[1])


def test_no_centering_unlike_batchnorm():
    torch.manual_seed(1)
    x = torch.randn(16, 3, 4, 4)
    pspn, bn = PSPNorm2d(3), nn.BatchNorm2d(3)
    y_p, y_b = pspn(x), bn(x)
    y_p2, y_b2 = pspn(x + 2.0), bn(x + 2.0)
    torch.testing.assert_close(y_b2, y_b, atol=1e-5, rtol=1e-5)  # BN removes the offset
    assert (y_p2 - y_p).abs().max() > 0.3  # PSPN does not
    # a positive offset survives as a positive mean, so a neuron after PSPN sees it
    assert float(pspn(x + 2.0).detach().mean()) > 0.5
    # PSPN is scale-invariant (division by the root mean square) and odd: sign information is kept
    torch.testing.assert_close(pspn(7.0 * x), y_p, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pspn(-x), -y_p)


def test_eval_uses_running_second_moment():
    torch.manual_seed(2)
    layer = PSPNorm2d(3, momentum=0.25)
    run = torch.ones(3)
    for k in range(4):
        x = torch.randn(8, 3, 5, 5) * (k + 1)
        layer(x)
        run = 0.75 * run + 0.25 * (x ** 2).mean((0, 2, 3))
    torch.testing.assert_close(layer.running_m2, run)
    assert int(layer.num_batches_tracked) == 4
    layer.eval()
    x = torch.randn(2, 3, 5, 5) * 5
    before = layer.running_m2.clone()
    y = layer(x)
    torch.testing.assert_close(y, x / torch.sqrt(run + layer.eps).view(1, 3, 1, 1))
    assert torch.equal(layer.running_m2, before)  # eval does not update
    # in eval the output of one sample does not depend on the rest of the batch
    torch.testing.assert_close(layer(x[:1]), y[:1])


def test_cumulative_average_and_no_running_stats():
    layer = PSPNorm1d(2, momentum=None)
    xs = [torch.randn(10, 2) * s for s in (1.0, 2.0, 3.0)]
    for x in xs:
        layer(x)
    torch.testing.assert_close(layer.running_m2, torch.stack([(x ** 2).mean(0) for x in xs]).mean(0))
    free = PSPNorm1d(2, track_running_stats=False).eval()
    x = torch.randn(10, 2) * 4
    torch.testing.assert_close(free(x), x / torch.sqrt((x ** 2).mean(0) + free.eps))
    assert free.running_m2 is None


def test_state_dict_round_trip_and_bias_option():
    a = PSPNorm2d(3, bias=True, momentum=0.5)
    assert set(a.state_dict()) == {"weight", "bias", "running_m2", "num_batches_tracked"}
    assert set(PSPNorm2d(3).state_dict()) == {"weight", "running_m2", "num_batches_tracked"}
    assert set(PSPNorm2d(3, affine=False).state_dict()) == {"running_m2", "num_batches_tracked"}
    with torch.no_grad():
        a.weight.uniform_(0.5, 2)
        a.bias.uniform_(-1, 1)
    a(torch.randn(4, 3, 2, 2) * 3)
    b = PSPNorm2d(3, bias=True)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(2, 3, 2, 2)
    torch.testing.assert_close(b(x), a(x))
    scale = a.weight / torch.sqrt(a.running_m2 + a.eps)
    torch.testing.assert_close(a(x), x * scale.view(1, 3, 1, 1) + a.bias.view(1, 3, 1, 1))


@pytest.mark.parametrize("bias,conv_bias", [(False, False), (False, True), (True, False), (True, True)])
def test_fold_into_conv_preserves_eval_outputs(bias, conv_bias):
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 4, 3, padding=1, bias=conv_bias)
    norm = PSPNorm2d(4, bias=bias, momentum=0.3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        if bias:
            norm.bias.uniform_(-1, 1)
    for _ in range(3):
        norm(conv(torch.randn(8, 2, 6, 6)))
    norm.eval()
    w_before = conv.weight.detach().clone()
    folded = norm.fold_into(conv)
    x = torch.randn(5, 2, 6, 6)
    torch.testing.assert_close(folded(x), norm(conv(x)), atol=1e-5, rtol=1e-5)
    assert torch.equal(conv.weight, w_before)  # the original conv is untouched
    assert (folded.bias is not None) == (bias or conv_bias)


def test_fold_into_linear_multistep():
    lin = nn.Linear(5, 3)
    norm = PSPNorm1d(3, step_mode="m")
    norm(lin(torch.randn(4, 6, 5)))
    norm.eval()
    x = torch.randn(4, 2, 5)
    torch.testing.assert_close(norm.fold_into(lin)(x), norm(lin(x)))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="num_features"):
        PSPNorm2d(0)
    with pytest.raises(TypeError, match="num_features"):
        PSPNorm2d(2.5)
    with pytest.raises(ValueError, match="eps"):
        PSPNorm2d(3, eps=0.0)
    with pytest.raises(ValueError, match="momentum"):
        PSPNorm2d(3, momentum=1.5)
    with pytest.raises(ValueError, match="bias=True needs affine"):
        PSPNorm2d(3, affine=False, bias=True)
    with pytest.raises(ValueError, match="step_mode"):
        PSPNorm2d(3, step_mode="t")
    with pytest.raises(TypeError, match="affine"):
        PSPNorm2d(3, affine=1)
    with pytest.raises(ValueError, match="channels"):
        PSPNorm2d(3)(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"\[T, N, C, H, W\]"):
        PSPNorm2d(3, step_mode="m")(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="rank"):
        PSPNorm1d(3)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="output channels"):
        PSPNorm2d(3).eval().fold_into(nn.Conv2d(1, 4, 3))
    with pytest.raises(TypeError, match="Conv"):
        PSPNorm2d(3).fold_into(nn.ReLU())
    with pytest.raises(RuntimeError, match="track_running_stats"):
        PSPNorm2d(3, track_running_stats=False).fold_into(nn.Conv2d(1, 3, 3))


def test_preact_block_identity_path_and_projection():
    torch.manual_seed(4)
    blk = PreActBlock(4, 4)
    x = torch.randn(2, 3, 4, 6, 6)
    with torch.no_grad():
        blk.conv2[0].weight.zero_()
    neuroq.reset_net(blk)
    torch.testing.assert_close(blk(x), x)  # the residual stream passes unchanged, un-normalized, un-spiked
    down = PreActBlock(4, 8, stride=2, norm="bn")
    neuroq.reset_net(down)
    assert down(x).shape == (2, 3, 8, 3, 3)
    single = PreActBlock(4, 4, norm="none", neuron=lambda: S2NNNode(), step_mode="s")
    assert single(x[0]).shape == x[0].shape
    with pytest.raises(ValueError, match="norm"):
        PreActBlock(4, 4, norm="layer")
    with pytest.raises(ValueError, match=r"\[T, N, C, H, W\]"):
        blk(x[0])


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_preact_resnet_depth_is_6n_plus_2(depth):
    net = preact_resnet(depth, norm="pspn", T=2, width=4)
    convs3 = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(convs3) + len(linears) == depth
    assert sum(isinstance(m, PSPNorm2d) for m in net.modules()) == 2 * (depth - 2) // 2 + 1
    with pytest.raises(ValueError, match="6n"):
        preact_resnet(depth + 1)


def test_preact_resnet_shapes_and_input_layouts():
    net = preact_resnet(20, norm="bn", T=3, width=4)
    x = torch.rand(2, 1, 12, 12)
    neuroq.reset_net(net)
    y4 = net(x)
    neuroq.reset_net(net)
    y5 = net(x.unsqueeze(0).expand(3, *x.shape))
    assert y4.shape == (3, 2, 10)
    torch.testing.assert_close(y4, y5)
    s2 = preact_resnet(20, neuron=lambda: S2NNNode(), T=1, width=4)
    assert s2(x).shape == (1, 2, 10)


def _block_firing_rates(depth, norm, x):
    """Firing rate of every LIF layer of a freshly initialised pre-activation net (train mode), counted from
    the neurons' own outputs by forward hooks (no meter, no model code)."""
    torch.manual_seed(0)
    net = preact_resnet(depth, norm=norm, T=2, width=4, neuron=lambda: LIFNode(step_mode="m"))
    net.train()
    rates = []
    hooks = [m.register_forward_hook(lambda m, a, out: rates.append(float(out.mean())))
             for m in net.modules() if isinstance(m, LIFNode)]
    neuroq.reset_net(net)
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return rates


def test_pspn_keeps_firing_controlled_over_depth():
    """The paper's mechanism is firing control: with PSPN every spiking layer of a net fires at a moderate
    rate however deep the net (20, 56, 110 layers), with no drift from the first blocks to the last;
    without normalization the same nets fall silent.  (At initialization BatchNorm's firing is controlled
    on these nets too -- docs/pspn.md gives the measurement -- so that contrast is not asserted here.)"""
    torch.manual_seed(5)
    x = torch.rand(16, 1, 16, 16)
    for depth in (20, 56, 110):
        rates = _block_firing_rates(depth, "pspn", x)
        assert len(rates) == depth - 1
        assert all(0.005 < r < 0.15 for r in rates), (depth, rates)
        third = len(rates) // 3
        first, last = sorted(rates[:third])[third // 2], sorted(rates[-third:])[third // 2]
        assert 0.5 < last / first < 2.0, (depth, first, last)
        assert max(_block_firing_rates(depth, "none", x)[1:]) < 1e-3


def test_pspn_keeps_potentials_bounded_in_a_deep_net():
    """At initialization every neuron of a depth-56 PSPN net sees an input whose second raw moment is
    gamma^2 = 1 per channel, however deep; without normalization it is not kept at that scale (here
    the small image potentials fire nothing and the net falls silent after the first projection)."""
    torch.manual_seed(5)
    x = torch.rand(4, 1, 16, 16)

    def neuron_input_m2(norm):
        net = preact_resnet(56, norm=norm, T=2, width=4, neuron=lambda: LIFNode(step_mode="m"))
        net.train()
        seen = []
        hooks = [m.register_forward_pre_hook(lambda m, a: seen.append(float((a[0] ** 2).mean())))
                 for m in net.modules() if isinstance(m, LIFNode)]
        neuroq.reset_net(net)
        with torch.no_grad():
            net(x)
        for h in hooks:
            h.remove()
        return seen

    pspn = neuron_input_m2("pspn")
    assert len(pspn) == 2 * 27 + 1
    assert all(0.95 < v <= 1.0 + 1e-6 for v in pspn), pspn
    none = neuron_input_m2("none")
    assert none[0] < 0.2 and none[-1] < 1e-3, none
