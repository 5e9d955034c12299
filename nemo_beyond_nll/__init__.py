"""Probability-based SFT objectives (beyond -log p) as an exact vocab-parallel loss for Megatron/NeMo."""

from .core.functional import linear_objective_loss, objective_loss
from .core.linear import vocab_parallel_linear_objective
from .core.module import LinearObjectiveLoss, ObjectiveLoss
from .core.objectives import FAMILIES, REFERENCE_NAMES, Objective, get_objective
from .core.vocab_parallel import ObjectiveOutput, vocab_parallel_objective

__all__ = [
    "FAMILIES",
    "REFERENCE_NAMES",
    "LinearObjectiveLoss",
    "Objective",
    "ObjectiveLoss",
    "ObjectiveOutput",
    "get_objective",
    "linear_objective_loss",
    "objective_loss",
    "vocab_parallel_linear_objective",
    "vocab_parallel_objective",
]
__version__ = "0.1.0"
