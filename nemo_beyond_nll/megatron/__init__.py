"""Megatron-Core / Megatron-Bridge integration: the loss hook, the fused output layer, the training
step's reduction and completion probabilities. Imports megatron-core lazily."""

from .hook import install, installed_objective, last_output, uninstall

__all__ = ["install", "uninstall", "installed_objective", "last_output"]
