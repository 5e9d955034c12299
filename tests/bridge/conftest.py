"""The real Megatron-Bridge tier (marker `bridge`): runs only in the Python 3.12 environment that
tests/bridge/build_env.sh builds, with tests/bridge/support on PYTHONPATH:

    PYTHONPATH=$PWD:$PWD/tests/bridge/support $(bash tests/bridge/build_env.sh)/bin/python \
        -m pytest -q -p no:cacheprovider tests/bridge

The default suite ignores this folder (pytest.ini). Elsewhere each test file is reported skipped,
without being imported (tests/support/tiers.py).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from tiers import mark_tier, tier_test_files  # tests/support, on the path through tests/conftest.py

HERE = Path(__file__).parent
OUTSIDE = ("Megatron-Bridge is not importable here: the Bridge tier runs in its own environment "
           "(bash tests/bridge/run.sh)")
pytest_pycollect_makemodule = tier_test_files("megatron.bridge", OUTSIDE)
# <org>--<name>/config.json: the published configs (architecture only: no weights, no tokenizer) of
# every backbone a recipe names and of every backbone Bridge's base recipe functions name themselves.
HF_FIXTURES = HERE / "fixtures" / "hf"
REVISION = "0" * 40  # the snapshot revision refs/main points at in the laid-out cache


def pytest_configure(config):
    config.addinivalue_line("markers", "bridge: needs the real Megatron-Bridge tier environment (tests/bridge)")


def pytest_collection_modifyitems(config, items):
    mark_tier(items, HERE, "bridge", "megatron.bridge", OUTSIDE)


def lay_out_hub_cache(cache: Path) -> Path:
    """The fixtures as a Hugging Face hub cache: models--Org--Name/snapshots/<rev>/..., refs/main."""
    for folder in sorted(HF_FIXTURES.iterdir()):
        org, name = folder.name.split("--", 1)
        repo = cache / f"models--{org}--{name}"
        snapshot = repo / "snapshots" / REVISION
        snapshot.mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(REVISION)
        for file in folder.iterdir():
            shutil.copy(file, snapshot / file.name)
    return cache


@pytest.fixture(scope="session", autouse=True)
def hf_hub_cache(tmp_path_factory):
    """Every test of the tier resolves hub ids offline, from the fixtures only."""
    home = tmp_path_factory.mktemp("hf_home")
    cache = lay_out_hub_cache(home / "hub")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(home))
        mp.setenv("HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("MEGATRON_CONFIG_LOCK_DIR", str(home / "locks"))  # Bridge's config-loading lock files
        if "huggingface_hub" in sys.modules:  # it reads these once, at import
            import huggingface_hub.constants as constants

            mp.setattr(constants, "HF_HOME", str(home))
            mp.setattr(constants, "HF_HUB_CACHE", str(cache))
            mp.setattr(constants, "HF_HUB_OFFLINE", True)
        yield cache


@pytest.fixture
def te_fused_rope(monkeypatch):
    """Megatron-Core's TransformerConfig checks, when apply_rope_fusion is on (Bridge's Llama 3
    providers), that Transformer Engine's fused RoPE kernel imports; the NeMo container has it, this
    CPU environment does not. A placeholder stands in for the check only: no model is built."""
    from megatron.core.models.common.embeddings import rope_utils

    if rope_utils.fused_apply_rotary_pos_emb is None:
        monkeypatch.setattr(rope_utils, "fused_apply_rotary_pos_emb", lambda *a, **k: None)
