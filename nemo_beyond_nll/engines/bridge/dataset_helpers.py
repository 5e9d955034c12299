"""Megatron-Core's C++ dataset helpers: use the prebuilt ones when the source tree is not there.

Megatron-Bridge's initialisation runs `make` in `megatron/core/datasets` on every start. A source
install (the NGC container) has the Makefile there; the PyPI wheel of Megatron-Core ships the
compiled `helpers_cpp` extension instead and no Makefile, so `make` fails and Bridge exits with
code 1 before training. When the compiled extension imports and there is nothing to build,
compiling is skipped; a source tree still compiles as before.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def prebuilt_helpers_available() -> bool:
    """True when Megatron-Core's compiled helpers import and its folder has no Makefile to run."""
    try:
        datasets = importlib.import_module("megatron.core.datasets")
        importlib.import_module("megatron.core.datasets.helpers_cpp")
    except ImportError:
        return False
    return not (Path(datasets.__file__).parent / "Makefile").exists()


def _skip_compile() -> None:
    logger.info("Megatron-Core's dataset helpers are prebuilt (pip wheel): nothing to compile")


def use_prebuilt_dataset_helpers() -> bool:
    """Make Bridge's start-up compile step a no-op where the helpers are prebuilt; returns whether it did."""
    if not prebuilt_helpers_available():
        return False
    bridge_init = importlib.import_module("megatron.bridge.training.initialize")
    if getattr(bridge_init, "compile_helpers", None) is not None:
        bridge_init.compile_helpers = _skip_compile
    return True
