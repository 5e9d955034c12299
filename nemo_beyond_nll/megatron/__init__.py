"""Megatron-Core glue: the loss hook and the CPU shims. Imports megatron-core lazily."""

from .hook import install, installed_objective, last_output, uninstall

__all__ = ["install", "uninstall", "installed_objective", "last_output"]
