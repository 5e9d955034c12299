"""The real NeMo AutoModel tier (marker `automodel`): runs only in the Python 3.11 environment that
tests/automodel/build_env.sh builds, with tests/automodel/support on PYTHONPATH:

    bash tests/automodel/run.sh

The default suite ignores this folder (pytest.ini). Elsewhere its tests are skipped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _automodel_importable() -> bool:
    try:
        return importlib.util.find_spec("nemo_automodel") is not None
    except (ImportError, ValueError):
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "automodel: needs the real NeMo AutoModel tier environment (tests/automodel)")


def pytest_collection_modifyitems(config, items):
    skip = None if _automodel_importable() else pytest.mark.skip(
        reason="nemo_automodel is not importable: run with the tier's environment (tests/automodel/build_env.sh)")
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.automodel)
            if skip:
                item.add_marker(skip)
