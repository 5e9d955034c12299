"""Modules and names that moved still import from their former paths, as the same objects."""

import importlib

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
])
def test_former_module_path_is_the_moved_module(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_former_names():
    from nemo_beyond_nll.eval.grade import grade

    assert grade is nemo_beyond_nll.domains.grade
    assert nemo_beyond_nll.data.build is nemo_beyond_nll.domains.build
    assert nemo_beyond_nll.data.DOMAINS == ("math", "medical", "figfont")
