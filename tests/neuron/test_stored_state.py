"""The stored-state check every neuroq neuron shares (``Neuron._stored_state``): a state left from a
batch of another size is refused with the same message, naming the state, until ``reset_net``."""
import pytest
import torch

import neuroq
from neuroq.layer.recurrent import SpikingRNN
from neuroq.neuron import LIFNode, SAFNode
from neuroq.neuron.hybrid import SpikingActivation


@pytest.mark.parametrize("make, features", [
    (lambda mode: LIFNode(step_mode=mode), 4),
    (lambda mode: SAFNode(step_mode=mode), 4),
    (lambda mode: SpikingActivation(torch.tanh, dt=2.0, step_mode=mode), 4),
    (lambda mode: SpikingRNN(4, 5, step_mode=mode), 5),   # its state is the hidden layer's
])
@pytest.mark.parametrize("mode", ["s", "m"])
def test_state_from_another_batch_is_refused_until_reset(make, features, mode):
    node = make(mode)
    lead = (3,) if mode == "m" else ()
    node(torch.rand(*lead, 2, 4))
    name = type(node).__name__
    with pytest.raises(RuntimeError, match=rf"^{name}: stored state v has shape \(2, {features}\) but this step needs "
                                           rf"shape \(5, {features}\); call .*reset_net.* between batches"):
        node(torch.rand(*lead, 5, 4))
    neuroq.reset_net(node)
    assert node(torch.rand(*lead, 5, 4)).shape == (*lead, 5, features)
