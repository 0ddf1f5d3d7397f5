"""Training: typed configs (:mod:`.config`), the methods (:mod:`.methods`), the one loop (:mod:`.loop`)
and run checkpoints (:mod:`.checkpoint`)."""
from .checkpoint import load_run  # noqa: F401
from .config import TrainConfig  # noqa: F401
from .loop import Trainer, evaluate, fit, meter_run, report_run  # noqa: F401
from .methods import Context, Method, available, get, register  # noqa: F401
