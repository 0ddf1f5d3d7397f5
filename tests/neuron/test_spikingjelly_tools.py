"""SpikingJelly's tools see neuroq's neurons (issue 17), on SpikingJelly 0.0.0.0.14 and 2.0.0.

SpikingJelly's monitors and 2.0.0's ``op_counter`` find neurons with ``isinstance(m, <SpikingJelly
class>)``.  neuroq's :class:`~neuroq.neuron.BaseNode` subclasses SpikingJelly's ``neuron.BaseNode``
(``IFNode``/``LIFNode`` also SpikingJelly's ``IFNode``/``LIFNode``) while every method that runs is
neuroq's; neurons that are not integrate-and-fire (S2NN, the hybrid activation) are found by passing
``neuroq.neuron.Neuron`` to the monitors.
"""
import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import monitor

import neuroq.neuron as nqn
from neuroq import _sj

SJ = _sj.sj_neuron_module()


def _net(make):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), make(), nn.Linear(6, 3), make())


def test_neuroq_neurons_are_spikingjelly_neurons_running_neuroq_code():
    for cls, sj in ((nqn.LIFNode, SJ.LIFNode), (nqn.IFNode, SJ.IFNode), (nqn.SAFNode, SJ.BaseNode),
                    (nqn.OnlineLIFNode, SJ.LIFNode)):
        n = cls()
        assert isinstance(n, SJ.BaseNode) and isinstance(n, sj) and isinstance(n, nqn.Neuron)
        for name in ("single_step_forward", "multi_step_forward", "neuronal_charge", "neuronal_fire",
                     "neuronal_reset", "reset", "extra_repr", "supported_backends", "backend"):
            owner = next(c for c in type(n).__mro__ if name in c.__dict__)
            assert owner.__module__.startswith("neuroq."), f"{cls.__name__}.{name} resolves to {owner}"
        assert list(n._memories)[0] == "v"


@pytest.mark.parametrize("kind", ["if", "lif"])
def test_monitors_find_neuroq_neurons_by_spikingjelly_basenode(kind):
    make = (lambda: nqn.LIFNode(tau=3.0, step_mode="m")) if kind == "lif" else (lambda: nqn.IFNode(step_mode="m"))
    net = _net(make)
    x = torch.rand(5, 2, 4) * 3
    out = monitor.OutputMonitor(net, SJ.BaseNode)
    att = monitor.AttributeMonitor("v", False, net, instance=SJ.BaseNode)
    y = net(x)
    assert len(out.records) == 2 and torch.equal(out.records[1], y)
    assert len(att.records) == 2 and torch.equal(att.records[0], net[1].v)
    out.remove_hooks(), att.remove_hooks()


def test_other_neurons_are_found_through_neuroq_neuron():
    net = _net(lambda: nqn.S2NNNode(step_mode="m"))
    out = monitor.OutputMonitor(net, nqn.Neuron)
    y = net(torch.rand(5, 2, 4) * 3)
    assert len(out.records) == 2 and torch.equal(out.records[1], y)
    out.remove_hooks()


@pytest.mark.skipif(not _sj.IS_SJ2, reason="op_counter exists only in SpikingJelly 2.0.0")
def test_op_counter_counts_neuroq_neurons():
    from spikingjelly.activation_based.op_counter import (DispatchCounterMode, ModuleCounterMode,
                                                           NeuromorphicMemoryAccessCounter, NeuronStateCounter)

    # the dispatch-level counters see torch ops: the fused CPU/CUDA kernels are one call each, so the
    # neuron-state counter needs backend='torch' (docs/spikingjelly.md)
    net = _net(lambda: nqn.LIFNode(step_mode="m", backend="torch"))
    x = torch.rand(5, 2, 4) * 3
    state = NeuronStateCounter()
    with DispatchCounterMode([state]):
        net(x)
    _sj.reset_net(net)
    mem = NeuromorphicMemoryAccessCounter()
    with ModuleCounterMode([mem], model=net):
        net(x)
    assert "Sequential.1" in state.get_metric_counts()
    assert mem.records.get("Sequential.1", {}).get("neuron_state_read_bytes", 0) > 0
