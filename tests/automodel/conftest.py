"""The real NeMo AutoModel tier (marker `automodel`): runs only in the Python 3.11 environment that
tests/automodel/build_env.sh builds, with tests/automodel/support on PYTHONPATH:

    bash tests/automodel/run.sh

The default suite ignores this folder (pytest.ini). Elsewhere each test file is reported skipped,
without being imported (tests/support/tiers.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiers import mark_tier, tier_test_files  # tests/support, on the path through tests/conftest.py

HERE = Path(__file__).parent
OUTSIDE = ("nemo_automodel is not importable here: the AutoModel tier runs in its own environment "
           "(bash tests/automodel/run.sh)")
# Its test files import nemo_automodel at their top: outside the tier they are skipped before that.
pytest_pycollect_makemodule = tier_test_files("nemo_automodel", OUTSIDE)


def pytest_configure(config):
    config.addinivalue_line("markers", "automodel: needs the real NeMo AutoModel tier environment (tests/automodel)")


def pytest_collection_modifyitems(config, items):
    mark_tier(items, HERE, "automodel", "nemo_automodel", OUTSIDE)
