"""Training: typed configs (:mod:`.config`), the methods (:mod:`.methods`), the one loop (:mod:`.loop`),
run checkpoints (:mod:`.checkpoint`) and the reports of a trained run (:mod:`.report`)."""
from .checkpoint import load_run  # noqa: F401
from .config import TrainConfig  # noqa: F401
from .loop import Trainer, evaluate, fit, train_step  # noqa: F401
from .methods import Context, Layout, Method, available, get, register  # noqa: F401
from .report import inference_model, meter_run, report_run  # noqa: F401
