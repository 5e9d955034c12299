"""Probability-based SFT objectives (beyond -log p) as an exact vocab-parallel loss for Megatron/NeMo."""

from .objectives import FAMILIES, REFERENCE_NAMES, Objective, get_objective
from .linear import vocab_parallel_linear_objective
from .vocab_parallel import ObjectiveOutput, vocab_parallel_objective

__all__ = [
    "FAMILIES",
    "REFERENCE_NAMES",
    "Objective",
    "ObjectiveOutput",
    "get_objective",
    "vocab_parallel_linear_objective",
    "vocab_parallel_objective",
]
__version__ = "0.1.0"
