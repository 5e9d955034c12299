"""The real NeMo AutoModel tier (marker `automodel`): runs only in the Python 3.11 environment that
tests/automodel/build_env.sh builds, with tests/automodel/support on PYTHONPATH:

    bash tests/automodel/run.sh

The default suite ignores this folder (pytest.ini). Elsewhere its tests are skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiers import mark_tier  # tests/support, on the path through tests/conftest.py

HERE = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "automodel: needs the real NeMo AutoModel tier environment (tests/automodel)")


def pytest_collection_modifyitems(config, items):
    mark_tier(items, HERE, "automodel", "nemo_automodel",
              "nemo_automodel is not importable: run with the tier's environment (tests/automodel/build_env.sh)")
