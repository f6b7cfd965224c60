"""Training: fine-tuning and super-network training, one loop for every strategy.

* :mod:`~nasprune.training.losses`: :func:`label_loss`, :func:`distillation_loss`.
* :mod:`~nasprune.training.strategies`: which sub-networks one step trains (:data:`STRATEGIES`).
* :mod:`~nasprune.training.trainer`: :class:`TrainingConfig`, :class:`Trainer`, the optimizer and
  the divergence check.
"""

from nasprune.training.losses import distillation_loss, label_loss
from nasprune.training.strategies import (
    DISTILL,
    LABELS,
    STRATEGIES,
    FixedSubnetStrategy,
    FullStrategy,
    KDStrategy,
    RandomLinearStrategy,
    RandomStrategy,
    SandwichStrategy,
    StandardStrategy,
    Strategy,
    TrainingTask,
    get_strategy,
)
from nasprune.training.trainer import (
    MAX_PARAMETER_MAGNITUDE,
    EpochRecord,
    Trainer,
    TrainingConfig,
    check_parameters_sane,
    make_optimizer,
)

__all__ = [
    "label_loss",
    "distillation_loss",
    "DISTILL",
    "LABELS",
    "STRATEGIES",
    "Strategy",
    "TrainingTask",
    "StandardStrategy",
    "RandomStrategy",
    "RandomLinearStrategy",
    "SandwichStrategy",
    "KDStrategy",
    "FullStrategy",
    "FixedSubnetStrategy",
    "get_strategy",
    "MAX_PARAMETER_MAGNITUDE",
    "EpochRecord",
    "Trainer",
    "TrainingConfig",
    "check_parameters_sane",
    "make_optimizer",
]
