"""Modules and names that moved still import from their former paths, as the same objects."""

import importlib
import importlib.util
from pathlib import Path

import pytest

import nemo_beyond_nll.data
import nemo_beyond_nll.domains


@pytest.mark.parametrize("old, new", [
    ("nemo_beyond_nll.objectives", "nemo_beyond_nll.core.objectives"),
    ("nemo_beyond_nll.vocab_parallel", "nemo_beyond_nll.core.vocab_parallel"),
    ("nemo_beyond_nll.linear", "nemo_beyond_nll.core.linear"),
    ("nemo_beyond_nll.triton_kernels", "nemo_beyond_nll.core.triton_kernels"),
    ("nemo_beyond_nll.eval.benchmarks", "nemo_beyond_nll.eval.benchmark_sets"),
    ("nemo_beyond_nll.eval.math", "nemo_beyond_nll.domains.math.answers"),
    ("nemo_beyond_nll.eval.medical", "nemo_beyond_nll.domains.medical.answers"),
    ("nemo_beyond_nll.eval.figfont", "nemo_beyond_nll.domains.figfont.answers"),
    ("nemo_beyond_nll.train", "nemo_beyond_nll.engines.cpu"),
    ("nemo_beyond_nll.train.cpu_trainer", "nemo_beyond_nll.engines.cpu.trainer"),
    ("nemo_beyond_nll.train.cpu_worker", "nemo_beyond_nll.engines.cpu.worker"),
    ("nemo_beyond_nll.train.checkpoint", "nemo_beyond_nll.engines.cpu.checkpoint"),
    ("nemo_beyond_nll.train.continuum", "nemo_beyond_nll.engines.cpu.continuum"),
    ("nemo_beyond_nll.train.metrics", "nemo_beyond_nll.engines.cpu.metrics"),
    ("nemo_beyond_nll.train.plots", "nemo_beyond_nll.engines.cpu.plots"),
    ("nemo_beyond_nll.megatron.bridge", "nemo_beyond_nll.engines.bridge.finetune"),
    ("nemo_beyond_nll.megatron.dataset_helpers", "nemo_beyond_nll.engines.bridge.dataset_helpers"),
    ("nemo_beyond_nll.megatron.probe_runner", "nemo_beyond_nll.engines.bridge.probe"),
    ("nemo_beyond_nll.megatron.cpu", "nemo_beyond_nll.engines.cpu.runtime"),
    ("nemo_beyond_nll.megatron.models", "nemo_beyond_nll.engines.cpu.models"),
    ("nemo_beyond_nll.megatron.generate", "nemo_beyond_nll.engines.cpu.generate"),
])
def test_former_module_path_is_the_moved_module(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_former_paths_are_a_table_not_files():
    from nemo_beyond_nll.former_paths import MOVED, new_path

    root = Path(nemo_beyond_nll.__file__).parent
    for old in MOVED:
        if not old.endswith("."):
            assert not (root / (old.replace(".", "/") + ".py")).exists(), f"{old} is both moved and a file"
            assert importlib.util.find_spec(new_path(f"nemo_beyond_nll.{old}")) is not None
    assert new_path("nemo_beyond_nll.core.objectives") is None


def test_a_moved_module_runs_once_and_keeps_its_own_name():
    import sys

    old = importlib.import_module("nemo_beyond_nll.train.plots")
    assert old.__name__ == old.__spec__.name == "nemo_beyond_nll.engines.cpu.plots"
    assert sys.modules["nemo_beyond_nll.train.plots"] is sys.modules["nemo_beyond_nll.engines.cpu.plots"]
    from nemo_beyond_nll.megatron.probe_runner import completion_probabilities, run_bridge_probe  # former names

    assert completion_probabilities is importlib.import_module("nemo_beyond_nll.megatron.completions").completion_probabilities
    assert callable(run_bridge_probe)


def test_former_names():
    from nemo_beyond_nll.eval.grade import grade

    assert grade is nemo_beyond_nll.domains.grade
    assert nemo_beyond_nll.data.build is nemo_beyond_nll.domains.build
    assert nemo_beyond_nll.data.DOMAINS == ("math", "medical", "figfont")
