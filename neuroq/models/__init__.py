"""Network builders: feed-forward MLP/CNN (and the rule choosing between them), deep pre-activation
ResNets, OTTT's VGG, MaQD networks, LMU and RNN classifiers."""
from .feedforward import ARCHS, classifier, select_arch, spiking_cnn, spiking_mlp  # noqa: F401
from .lmu import LMUClassifier, hybrid_lmu_classifier, lmu_classifier  # noqa: F401
from .maqd import maqd_cnn, maqd_mlp  # noqa: F401
from .resnet import PreActResNet, preact_resnet  # noqa: F401
from .rnn import IRNNClassifier, SpikingRNNClassifier  # noqa: F401
from .vgg import OTTT_VGG11, lif_vgg_bn, lif_vgg_ws  # noqa: F401
