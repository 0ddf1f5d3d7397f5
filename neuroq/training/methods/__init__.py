"""Training methods: one class per method, each with a typed ``Config`` (see :mod:`.base`).

==========  ===================================================================  ==============
name        what                                                                 module
==========  ===================================================================  ==============
lif, if     multi-step LIF / IF network, BPTT with surrogate gradients           :mod:`.bptt`
ann         the same network with ReLU                                           :mod:`.bptt`
s2nn        single-step S²NN network, the S²NN surrogate (published or reduced)  :mod:`.s2nn`
saf-e/f     Spike Accumulation Forwarding (per-step / final loss)                :mod:`.online`
ottt-o/a    Online Training Through Time (online / accumulated update)           :mod:`.online`
maqd        MaQD quantization-aware training (M_w, M_a states, LBN)              :mod:`.maqd`
gm-vi       Gaussian-mixture VI (entropy approximation) of the LIF/ReLU network  :mod:`.gmvi`
lmu         Legendre Memory Unit sequence classifier                             :mod:`.lmu`
hybrid-lmu  the LMU with hybrid-spiking activations (spike counts n/dt)          :mod:`.lmu`
irnn        IRNN (ReLU RNN, identity-initialised recurrence) on sequences        :mod:`.rnn`
srnn        recurrent LIF network on sequences                                   :mod:`.rnn`
==========  ===================================================================  ==============
"""
from .base import (  # noqa: F401
    Context, FeedForwardConfig, Layout, Method, MethodConfig, TimeConfig, available, configs, get, method_class,
    register,
)
