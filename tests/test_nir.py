"""neuroq.nir: NIR export/import, checked against NIR's own equations and against peer libraries.

* the exported parameters are checked by simulating NIR's ODEs (forward Euler, written here from
  the NIR spec) and comparing spikes with the neuroq network;
* round trip ``load(export(m))`` reproduces ``m`` bit for bit;
* the exported graph loaded by Norse and snnTorch gives the same spikes on the same input, and a
  graph exported by snnTorch loads into neuroq with the same spikes;
* SpikingJelly 2.0's own exporter, given ``to_spikingjelly(m)``, writes the same parameters;
* torch.fx tracing of neuroq neurons.

Needs ``nir`` (skipped without it); the peer checks need ``nirtorch`` plus ``norse`` / ``snntorch``.
"""
import contextlib
import io

import numpy as np
import pytest
import torch
import torch.nn as nn

nir = pytest.importorskip("nir")

import neuroq.nir as nqnir  # noqa: E402
from neuroq import _sj  # noqa: E402
from neuroq._validate import check_step_input  # noqa: E402
from neuroq.layer import (  # noqa: E402
    LayerBatchNorm1d, LayerBatchNorm2d, PSPNorm1d, PSPNorm2d, QuantConv2d, QuantLinear, SeqOp,
)
from neuroq.models import spiking_cnn, spiking_mlp  # noqa: E402
from neuroq.neuron import IFNode, LIFNode  # noqa: E402


def run(net, x):
    _sj.reset_net(net)
    with torch.no_grad():
        y = net(x)
    _sj.reset_net(net)
    return y


def drive(net, x, std=1.5, mean=0.5):
    """Rescale each top-level layer's weights (data-dependent, layer by layer) so that its output on
    ``x`` has the given std and, where it has a bias, mean: every neuron layer then fires at a rate
    well inside (0, 1), whatever the random initialisation."""
    _sj.reset_net(net)
    h = x
    with torch.no_grad():
        for m in net:
            layers = [m] if isinstance(m, (nn.Linear, nn.Conv2d)) else \
                [c for c in m.modules() if isinstance(c, (nn.Linear, nn.Conv2d))]
            if layers and not isinstance(m, _sj.MemoryModule):
                layers[0].weight.mul_(std / m(h).std().clamp_min(1e-6))
                if layers[0].bias is not None:
                    layers[0].bias.add_(mean - m(h).mean())
            h = m(h)
    _sj.reset_net(net)
    return net


def mlp(decay_input=True, v_reset=0.0, tau=2.0):
    return nn.Sequential(
        nn.Linear(6, 16), LIFNode(tau=tau, decay_input=decay_input, v_reset=v_reset, step_mode="m"),
        nn.Linear(16, 8, bias=False), IFNode(v_threshold=0.7, v_reset=v_reset, step_mode="m"),
    )


def active(spikes):
    rate = spikes.float().mean().item()
    assert 0.02 < rate < 0.98, f"test network fires at rate {rate}: comparison would be vacuous"


# ---------------------------------------------------------------------------------------------
# the mapping, against NIR's ODEs
# ---------------------------------------------------------------------------------------------
def simulate_nir(graph, x_seq, dt):
    """Forward-Euler simulation of a NIR chain, straight from the NIR spec (float64); the synaptic
    primitives (Conv2d, AvgPool2d, Flatten) are applied per step with ``torch.nn.functional``."""
    order, cur = [], "input"
    succ = dict(graph.edges)
    while succ[cur] != "output":
        cur = succ[cur]
        order.append(cur)
    state = {}
    outs = []
    for t in range(x_seq.shape[0]):
        h = x_seq[t].astype(np.float64)
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Affine):
                h = h @ node.weight.T.astype(np.float64) + node.bias
            elif isinstance(node, nir.Linear):
                h = h @ node.weight.T.astype(np.float64)
            elif isinstance(node, nir.Conv2d):
                h = torch.nn.functional.conv2d(
                    torch.from_numpy(h), torch.from_numpy(np.asarray(node.weight, dtype=np.float64)),
                    torch.from_numpy(np.asarray(node.bias, dtype=np.float64)), tuple(node.stride),
                    node.padding if isinstance(node.padding, str) else tuple(node.padding), tuple(node.dilation),
                    int(node.groups)).numpy()
            elif isinstance(node, nir.AvgPool2d):
                h = torch.nn.functional.avg_pool2d(torch.from_numpy(h), tuple(node.kernel_size), tuple(node.stride),
                                                   tuple(node.padding)).numpy()
            elif isinstance(node, nir.Flatten):  # NIR counts the axes from the first non-batch one
                start, end = int(node.start_dim), int(node.end_dim)
                h = torch.from_numpy(h).flatten(start + 1, end + 1 if end >= 0 else end).numpy()
            elif isinstance(node, (nir.LIF, nir.IF)):
                v = state.get(name, np.broadcast_to(node.v_reset, h.shape).copy())
                if isinstance(node, nir.LIF):   # tau v' = (v_leak - v) + r I
                    v = v + dt / node.tau * ((node.v_leak - v) + node.r * h)
                else:                            # v' = r I
                    v = v + dt * node.r * h
                z = v > node.v_threshold
                state[name] = np.where(z, node.v_reset, v)
                h = z.astype(np.float64)
            else:
                raise AssertionError(type(node))
        outs.append(h)
    return np.stack(outs)


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, -0.3])
@pytest.mark.parametrize("dt", [1.0, 1e-3])
def test_export_parameters_reproduce_nir_dynamics(decay_input, v_reset, dt):
    x = torch.rand(16, 4, 6, dtype=torch.float64) * 2
    net = drive(mlp(decay_input, v_reset, tau=3.0).double(), x)
    graph = nqnir.export(net, x, dt=dt)
    assert [type(graph.nodes[k]).__name__ for k in ("0", "1", "2", "3")] == ["Affine", "LIF", "Linear", "IF"]
    lif = graph.nodes["1"]
    assert lif.tau.shape == (16,) and np.allclose(lif.tau, 3.0 * dt)
    assert np.allclose(lif.r, 1.0 if decay_input else 3.0) and np.all(lif.v_leak == v_reset)
    y = run(net, x)
    active(y)
    ref = simulate_nir(graph, x.numpy(), dt)
    np.testing.assert_array_equal(y.numpy(), ref)


# ---------------------------------------------------------------------------------------------
# round trip
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", [
    lambda: LIFNode(tau=2.0),
    lambda: LIFNode(tau=4.0, decay_input=False, v_threshold=0.8),
    lambda: IFNode(v_reset=-0.5),
])
def test_round_trip_cnn_is_identical(factory, tmp_path):
    x = torch.rand(6, 3, 2, 8, 8)
    net = drive(spiking_cnn((2, 8, 8), 5, factory, channels=(4, 6), hidden=12, norm=False), x)
    graph = nqnir.export(net, x)
    loaded = nqnir.load(graph)
    y = run(net, x)
    assert torch.equal(y, run(loaded, x))
    path = tmp_path / "net.nir"
    nir.write(str(path), graph)
    assert torch.equal(y, run(nqnir.load(str(path)), x))
    # load(export(.)) is a fixed point: the re-exported graph carries the same numbers
    again = nqnir.export(loaded, x)
    for a, b in zip(_chain(graph), _chain(again)):
        assert type(a) is type(b)
        for field in ("weight", "bias", "tau", "r", "v_leak", "v_threshold", "v_reset"):
            if hasattr(a, field):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    # every neuron layer does spike (otherwise equality would be trivial)
    _sj.reset_net(net)
    h = x
    with torch.no_grad():
        for m in net:
            h = m(h)
            if isinstance(m, _sj.MemoryModule):
                active(h)
    _sj.reset_net(net)


def _chain(graph):
    """The nodes of a chain graph between its Input and Output, in order."""
    succ = dict(graph.edges)
    cur = next(k for k, v in graph.nodes.items() if isinstance(v, nir.Input))
    out = []
    while not isinstance(graph.nodes[succ[cur]], nir.Output):
        cur = succ[cur]
        out.append(graph.nodes[cur])
    return out


def test_round_trip_single_step_model_loads_multi_step():
    net = nn.Sequential(nn.Linear(5, 7), LIFNode(tau=2.0, step_mode="s"), nn.Linear(7, 3), IFNode(step_mode="s"))
    x = torch.rand(9, 4, 5)
    drive(net, x[0])
    graph = nqnir.export(net, x[0])
    assert graph.metadata["step_mode"] == "s"
    loaded = nqnir.load(graph)
    _sj.reset_net(net)
    with torch.no_grad():
        ref = torch.stack([net(x[t]) for t in range(x.shape[0])])
    active(ref)
    assert torch.equal(ref, run(loaded, x))


def test_batchnorm_is_folded_into_the_preceding_layer():
    net = spiking_cnn((1, 8, 8), 4, lambda: LIFNode(tau=2.0), channels=(3, 5), hidden=10, norm=True, fc_norm=True)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    x = torch.rand(4, 2, 1, 8, 8)
    stats = [b.clone() for b in net.buffers()]
    graph = nqnir.export(net, x)  # in train mode: must not touch the running statistics
    assert net.training and all(torch.equal(a, b) for a, b in zip(stats, net.buffers()))
    net.eval()
    assert not any("BatchNorm" in type(n).__name__ for n in graph.nodes.values())
    loaded = nqnir.load(graph).eval()
    with torch.no_grad():  # conv -> BN -> pool against the folded conv -> pool
        torch.testing.assert_close(loaded[0](x), net[0](x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(run(loaded, x), run(net, x), rtol=1e-4, atol=1e-4)


def _trained_norm_net(kind):
    """A conv -> norm -> LIF -> pool -> linear -> norm -> LIF -> linear -> IF chain with PSPN (``'pspn'``:
    the norms at the top level in step mode 'm', one with a shift beta) or Layer-Batch Norm (``'lbn'``: MaQD's
    quantized layers, the norms inside SeqOp), trained a few batches so the running statistics are not
    their initial values, with random affine parameters."""
    torch.manual_seed(11)
    if kind == "pspn":
        net = nn.Sequential(
            SeqOp(nn.Conv2d(2, 4, 3, padding=1)), PSPNorm2d(4, bias=True, momentum=0.5, step_mode="m"),
            LIFNode(tau=2.0, step_mode="m"), SeqOp(nn.AvgPool2d(2)), nn.Flatten(start_dim=2),
            nn.Linear(64, 12, bias=False), PSPNorm1d(12, momentum=0.5, step_mode="m"),
            LIFNode(tau=3.0, step_mode="m"), nn.Linear(12, 5), IFNode(step_mode="m"))
    else:
        net = nn.Sequential(
            SeqOp(QuantConv2d(2, 4, 3, padding=1, w_states=3), LayerBatchNorm2d(4, momentum=0.5)),
            LIFNode(tau=2.0, step_mode="m"),
            SeqOp(nn.AvgPool2d(2), nn.Flatten(), QuantLinear(64, 12, w_states=5), LayerBatchNorm1d(12, momentum=0.5)),
            LIFNode(tau=3.0, step_mode="m"), SeqOp(QuantLinear(12, 5, w_states=3)), IFNode(step_mode="m"))
    norms = [m for m in net.modules() if isinstance(m, (PSPNorm1d, PSPNorm2d, LayerBatchNorm1d, LayerBatchNorm2d))]
    net.train()
    for _ in range(3):
        run(net, torch.rand(4, 6, 2, 8, 8) * 2)
    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(1.0, 4.0)
            if m.bias is not None:
                m.bias.uniform_(-0.5, 0.5)
        if kind == "pspn":  # so that the output layer fires too
            net[-2].weight.uniform_(0.0, 1.0)
    return net.eval(), norms


@pytest.mark.parametrize("kind", ["pspn", "lbn"])
def test_pspn_and_layer_batch_norm_are_folded_into_the_preceding_layer(kind):
    net, norms = _trained_norm_net(kind)
    x = torch.rand(5, 3, 2, 8, 8) * 2
    stats = [b.clone() for b in net.buffers()]
    graph = nqnir.export(net, x)
    assert all(torch.equal(a, b) for a, b in zip(stats, net.buffers()))      # statistics read, not updated
    chain = _chain(graph)
    # PSPN without a shift after a Linear without bias folds to a Linear; with a shift (or LBN: always) an Affine
    second = "Linear" if kind == "pspn" else "Affine"
    assert [type(n).__name__ for n in chain] == ["Conv2d", "LIF", "AvgPool2d", "Flatten", second, "LIF",
                                                 "Affine", "IF"]

    # each folded node's numbers, applied (with torch.nn.functional, not neuroq.nir.load) to the input the
    # network's layer gets, give the network's eval-mode norm(layer(.))
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, k=k: seen.__setitem__(k, (args[0], out)))
             for k, m in enumerate(layers + norms)]
    try:
        y = run(net, x)
    finally:
        for h in hooks:
            h.remove()
    conv, aff = chain[0], chain[4]
    conv_in, norm0_out = seen[0][0], seen[len(layers)][1]
    got = torch.nn.functional.conv2d(conv_in, torch.from_numpy(conv.weight), torch.from_numpy(conv.bias),
                                     tuple(conv.stride), tuple(conv.padding))
    torch.testing.assert_close(got, norm0_out.reshape(got.shape), rtol=1e-5, atol=1e-5)
    lin_in, norm1_out = seen[1][0], seen[len(layers) + 1][1]
    got = lin_in @ torch.from_numpy(aff.weight).T + (torch.from_numpy(aff.bias) if second == "Affine" else 0)
    torch.testing.assert_close(got, norm1_out.reshape(got.shape), rtol=1e-5, atol=1e-5)
    # the last (unfolded) layer is written with the weight it applies (MaQD: the quantized one)
    w_applied = layers[2].quantized_weight() if kind == "lbn" else layers[2].weight
    np.testing.assert_array_equal(chain[6].weight, w_applied.detach().numpy())

    # the whole graph, simulated from the NIR spec, spikes as the eval-mode network
    active(y)
    np.testing.assert_array_equal(y.numpy(), simulate_nir(graph, x.double().numpy(), 1.0))


# ---------------------------------------------------------------------------------------------
# other libraries
# ---------------------------------------------------------------------------------------------
def test_norse_gives_the_same_spikes():
    pytest.importorskip("nirtorch")
    norse_torch = pytest.importorskip("norse.torch")
    x = torch.rand(20, 5, 6) * 2
    net = drive(mlp(decay_input=True, v_reset=0.0, tau=2.0), x)
    graph = nqnir.export(net, x, dt=1.0)
    model = norse_torch.from_nir(graph, dt=1.0)
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = model(x[t], state)
            outs.append(out)
    y = run(net, x)
    active(y)
    assert torch.equal(torch.stack(outs), y)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_snntorch_gives_the_same_spikes(kind):
    pytest.importorskip("nirtorch")
    pytest.importorskip("snntorch")
    from snntorch import utils as snn_utils
    from snntorch.import_nir import import_from_nir

    if kind == "mlp":  # snnTorch's importer maps NIR IF to a leaky neuron, so LIF only
        net = nn.Sequential(nn.Linear(6, 16), LIFNode(tau=2.0, step_mode="m"),
                            nn.Linear(16, 8), LIFNode(tau=4.0, step_mode="m"))
        x = torch.rand(20, 5, 6)
    else:  # no Flatten: snnTorch's importer does not shift NIR's flatten dims past the batch axis
        net = nn.Sequential(
            _sj.SeqToANNContainer(nn.Conv2d(2, 4, 3, padding=1), nn.AvgPool2d(2)), LIFNode(tau=2.0, step_mode="m"),
            _sj.SeqToANNContainer(nn.Conv2d(4, 3, 3, padding=1, bias=False)), LIFNode(tau=3.0, step_mode="m"))
        x = torch.rand(12, 3, 2, 8, 8)
    drive(net, x, std=3.0)
    graph = nqnir.export(net, x, dt=1e-4)  # snnTorch's importer assumes dt = 1e-4
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its threshold rescaling
        model = import_from_nir(graph)
    snn_utils.reset(model)
    outs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out = model(x[t])
            outs.append(out[0] if isinstance(out, tuple) else out)
    y = run(net, x)
    active(y)
    assert torch.equal(torch.stack(outs), y)


def test_graph_exported_by_snntorch_loads_with_the_same_spikes():
    pytest.importorskip("nirtorch")
    snn = pytest.importorskip("snntorch")
    from snntorch import utils as snn_utils
    from snntorch.export_nir import export_to_nir

    def leaky(n, beta, thr):  # NIR's reset-to-v_reset semantics: zero reset, no delay
        return snn.Leaky(beta=torch.full((n,), beta), threshold=torch.full((n,), thr), reset_mechanism="zero",
                         reset_delay=False, init_hidden=True)

    ref_net = nn.Sequential(nn.Linear(6, 8), leaky(8, 0.5, 1.0), nn.Linear(8, 4), leaky(4, 0.75, 0.5))
    x = torch.rand(15, 3, 6) * 2
    with torch.no_grad():
        for m in ref_net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(2.0)
    with contextlib.redirect_stdout(io.StringIO()):
        graph = export_to_nir(ref_net, x[0, 0])  # snnTorch wants an unbatched sample
    net = nqnir.load(graph, dt=1e-4)
    assert [type(m).__name__ for m in net] == ["Linear", "LIFNode", "Linear", "LIFNode"]
    assert net[1].decay_input is False and abs(net[1].tau - 2.0) < 1e-6
    snn_utils.reset(ref_net)
    with torch.no_grad():
        ref = torch.stack([ref_net(x[t]) for t in range(x.shape[0])])
    active(ref)
    assert torch.equal(ref, run(net, x))


@pytest.mark.skipif(not _sj.IS_SJ2, reason="SpikingJelly 0.0.0.0.14 has no NIR exchange")
def test_spikingjelly_exporter_writes_the_same_graph():
    pytest.importorskip("nirtorch")
    from spikingjelly.activation_based.nir_exchange import export_to_nir, import_from_nir

    net = nn.Sequential(nn.Linear(6, 7), LIFNode(tau=2.0, v_reset=-0.2, step_mode="m"), nn.Linear(7, 5),
                        LIFNode(tau=3.0, decay_input=False, step_mode="m"), nn.Linear(5, 4, bias=False),
                        IFNode(v_threshold=0.5, step_mode="m"))
    x = torch.rand(10, 2, 6) * 2
    drive(net, x)
    ours = nqnir.export(net, x, dt=1e-4)
    theirs = export_to_nir(nqnir.to_spikingjelly(net), x, dt=1e-4)
    a, b = _chain(ours), _chain(theirs)
    assert [type(n).__name__ for n in a] == [type(n).__name__ for n in b]
    for p, q in zip(a, b):
        for field in ("weight", "bias", "tau", "r", "v_leak", "v_threshold", "v_reset"):
            if hasattr(p, field):
                np.testing.assert_allclose(np.asarray(getattr(p, field), dtype=np.float64),
                                           np.asarray(getattr(q, field), dtype=np.float64), rtol=1e-12, atol=0)
    # SpikingJelly's importer runs our graph to the same spikes
    sj_net = import_from_nir(ours, dt=1e-4, step_mode="m")
    y = run(net, x)
    active(y)
    _sj.reset_net(sj_net)
    with torch.no_grad():
        out = sj_net(x)
    assert torch.equal(out[0] if isinstance(out, tuple) else out, y)


def test_to_spikingjelly_keeps_spikes():
    x = torch.rand(12, 4, 6) * 2
    net = drive(mlp(decay_input=False, v_reset=-0.1, tau=3.0), x)
    twin = nqnir.to_spikingjelly(net)
    sj = _sj.sj_neuron_module()
    assert type(twin[1]) is sj.LIFNode and type(twin[3]) is sj.IFNode and type(net[1]) is LIFNode
    y = run(net, x)
    active(y)
    assert torch.equal(run(twin, x), y)
    # spikingjelly's own neurons export too, to the same graph
    g1, g2 = nqnir.export(net, x), nqnir.export(twin, x)
    for p, q in zip(_chain(g1), _chain(g2)):
        for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
            if hasattr(p, field):
                np.testing.assert_array_equal(getattr(p, field), getattr(q, field))


# ---------------------------------------------------------------------------------------------
# torch.fx
# ---------------------------------------------------------------------------------------------
def test_trace_keeps_neurons_as_leaves():
    net = spiking_mlp(16, (12,), 3, lambda: LIFNode(tau=2.0), norm=True).eval()
    gm = nqnir.trace(net)
    called = [type(gm.get_submodule(n.target)).__name__ for n in gm.graph.nodes if n.op == "call_module"]
    assert called == ["Flatten", "SeqOp", "LIFNode", "Linear"]
    x = torch.rand(5, 2, 1, 4, 4)
    assert torch.equal(run(gm, x), run(net, x))


@pytest.mark.skipif(not _sj.IS_SJ2, reason="SpikingJelly 0.0.0.0.14's surrogate branches on x.requires_grad, "
                                           "which torch.fx cannot trace; use neuroq.nir.trace")
def test_plain_symbolic_trace_of_a_single_step_neuron():
    net = nn.Sequential(nn.Linear(4, 3), LIFNode(tau=2.0, step_mode="s"))
    gm = torch.fx.symbolic_trace(net)  # used to fail: "input must be a torch.Tensor, got Proxy"
    assert any(n.op == "call_function" for n in gm.graph.nodes)  # traced through the neuron
    _sj.reset_net(net)  # the trace left a Proxy in the neuron's state
    x = torch.rand(2, 4) * 4
    with torch.no_grad():
        assert torch.equal(gm(x), net(x))  # one step from the reset state


def test_check_step_input_still_checks_tensors():
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_step_input("LIFNode", [1.0, 2.0], "s")
    with pytest.raises(ValueError, match=r"\[T, N, ...\]"):
        check_step_input("LIFNode", torch.zeros(3), "m")
    proxy = torch.fx.Proxy(torch.fx.Graph().placeholder("x"))
    assert check_step_input("LIFNode", proxy, "m") is None


# ---------------------------------------------------------------------------------------------
# what NIR cannot say: clear errors
# ---------------------------------------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.lif = LIFNode(step_mode="m")

    def forward(self, x):
        return self.lif(self.fc(x) + x)


@pytest.mark.parametrize("net, match", [
    (nn.Sequential(nn.Linear(4, 4), LIFNode(v_reset=None, step_mode="m")), "soft reset"),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU()), "ReLU"),
    (nn.Sequential(nn.Linear(4, 4), LIFNode(step_mode="m"), _sj.SeqToANNContainer(nn.BatchNorm1d(4))), "BatchNorm1d"),
    (nn.Sequential(nn.Linear(4, 4), LIFNode(step_mode="m"), PSPNorm1d(4, step_mode="m")), "PSPNorm1d"),
    (nn.Sequential(nn.Linear(4, 4), PSPNorm1d(4, track_running_stats=False, step_mode="m"), LIFNode(step_mode="m")),
     "track_running_stats"),
    (nn.Sequential(SeqOp(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False)), LIFNode(step_mode="m")),
     "no running statistics"),
    (nn.Sequential(nn.Flatten(start_dim=1), nn.Linear(8, 4), LIFNode(step_mode="m")), "batch axis"),
    (_Residual(), "add"),
])
def test_export_refuses_what_nir_cannot_express(net, match):
    x = torch.rand(3, 2, 4)
    with pytest.raises(ValueError, match=match):
        nqnir.export(net, x)


def _lif_graph(**over):
    p = dict(tau=np.full(3, 2.0), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3))
    p.update(over)
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "lif": nir.LIF(**p),
                               "output": nir.Output(np.array([3]))},
                        edges=[("input", "lif"), ("lif", "output")], metadata={})


@pytest.mark.parametrize("graph_kw, dt, match", [
    (dict(tau=np.array([2.0, 3.0, 2.0])), 1.0, "differ across neurons"),
    ({}, 4.0, "tau > 1"),
    (dict(r=np.full(3, 0.5)), 1.0, "r = 0.5"),
    (dict(v_leak=np.full(3, 0.2)), 1.0, "v_leak"),
])
def test_load_refuses_what_neuroq_cannot_express(graph_kw, dt, match):
    with pytest.raises(ValueError, match=match):
        nqnir.load(_lif_graph(**graph_kw), dt=dt)


def test_load_refuses_other_primitives_and_non_chains():
    cuba = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])),
                               "n": nir.CubaLIF(tau_syn=np.ones(2) * 2, tau_mem=np.ones(2) * 2, r=np.ones(2),
                                                v_leak=np.zeros(2), v_threshold=np.ones(2)),
                               "output": nir.Output(np.array([2]))},
                        edges=[("input", "n"), ("n", "output")], metadata={})
    with pytest.raises(ValueError, match="CubaLIF"):
        nqnir.load(cuba)
    w = np.eye(2, dtype=np.float32)
    fan = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "a": nir.Linear(w), "b": nir.Linear(w),
                              "output": nir.Output(np.array([2]))},
                       edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")], metadata={})
    with pytest.raises(ValueError, match="chain"):
        nqnir.load(fan)


def test_load_names_the_path_of_a_file_that_is_no_nir_graph(tmp_path):
    import h5py

    (tmp_path / "empty.nir").write_bytes(b"")
    (tmp_path / "junk.nir").write_text("not hdf5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["a"] = [1, 2]
    for name, err, msg in [("missing.nir", FileNotFoundError, "does not exist"), (".", ValueError, "is a folder"),
                           ("empty.nir", ValueError, "is empty"), ("junk.nir", ValueError, "not a readable NIR graph"),
                           ("other.h5", ValueError, "not a readable NIR graph")]:
        path = tmp_path / name
        with pytest.raises(err, match=msg) as e:
            nqnir.load(path)
        assert str(path) in str(e.value)
