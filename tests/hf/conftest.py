"""The Hugging Face tier (marker `hf`): transformers.Trainer and TRL's SFTTrainer with the objectives,
in the Python 3.11 environment that tests/hf/build_env.sh builds:

    bash tests/hf/run.sh

Elsewhere (the default environment has neither transformers nor trl) each module skips itself at
import, with `pytest.importorskip(..., reason=tier.WHY)`: a skip raised here, in a conftest, would
be a collection error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tiers import mark_tier  # tests/support, on the path through tests/conftest.py

from .tier import WHY

HERE = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "hf: needs the Hugging Face tier environment (tests/hf)")


def pytest_collection_modifyitems(config, items):
    mark_tier(items, HERE, "hf", "trl", WHY)


# The tier's shared fixtures, for the modules that have skipped already outside the tier's environment.
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random-weight Llama and its tokenizer (tiny.write_model), once per module."""
    from .tiny import write_model

    return write_model(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="module")
def data(model_dir):
    """The pre-tokenized rows (tiny.tokenized_rows) of that model's tokenizer."""
    from .tiny import load_tokenizer, tokenized_rows

    return tokenized_rows(load_tokenizer(model_dir))
