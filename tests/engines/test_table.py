"""The engine table: one entry per engine the recipe schema accepts, each with the whole face, and
reading it imports no engine's heavy libraries."""

import subprocess
import sys

import pytest

from nemo_beyond_nll import engines, recipe

COMMANDS = ("check", "dry_run", "sft", "eval", "probe", "import_backbone", "continuum")


def test_the_table_holds_every_engine_the_recipe_schema_accepts():
    assert sorted(engines.ENGINES) == sorted(recipe.ENGINES)


@pytest.mark.parametrize("name", sorted(engines.ENGINES))
def test_each_engine_shows_the_whole_face(name):
    engine = engines.ENGINES[name]()
    assert isinstance(engine.runs_here, bool)
    assert [c for c in COMMANDS if not callable(getattr(engine, c, None))] == []


def test_picking_an_engine_imports_no_gpu_library():
    code = ("import sys; from nemo_beyond_nll import engines; engines.ENGINES['bridge'](); engines.ENGINES['cpu']();"
            "loaded = [m for m in ('megatron.bridge', 'vllm', 'transformers') if m in sys.modules]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
