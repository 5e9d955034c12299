"""The vLLM backend on CPU: vLLM is replaced by a small fake that records how it is called (the real
library needs CUDA and is not installed here)."""

import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from nemo_beyond_nll.config import ConfigError
from nemo_beyond_nll.eval.backends import BackendUnavailable, load_vllm
from nemo_beyond_nll.recipe import load_recipe

RECIPES = Path(__file__).parents[2] / "recipes"
MATH_RECIPE = RECIPES / "qwen2.5-math-7b_math.yaml"


def fake_vllm(monkeypatch, answer=lambda prompt: "\\boxed{2}"):
    calls = {"llm": [], "params": [], "prompts": []}
    module = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(self, **kwargs):
            calls["params"].append(kwargs)
            self.n = kwargs.get("n", 1)

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"].append(kwargs)

        def generate(self, prompts, params, use_tqdm=True):
            calls["prompts"].append(list(prompts))
            # vLLM returns one RequestOutput per prompt, in order, each with its completions
            return [SimpleNamespace(prompt=p, outputs=[SimpleNamespace(text=answer(p))] * params.n) for p in prompts]

    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return calls


def test_missing_vllm_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` fails as if it were not installed
    with pytest.raises(BackendUnavailable) as err:
        load_vllm("some/model")
    message = str(err.value)
    assert "\n" not in message and message.startswith("evaluation needs vLLM")
    assert isinstance(err.value, ImportError)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tensor_parallel": 0}, "tensor_parallel must be a positive integer"),
        ({"max_model_len": 0}, "max_model_len must be a positive integer"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization must lie"),
    ],
)
def test_vllm_arguments_are_checked_before_loading(monkeypatch, kwargs, message):
    calls = fake_vllm(monkeypatch)
    with pytest.raises(ValueError, match=message):
        load_vllm("some/model", **kwargs)
    assert calls["llm"] == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
        ({"max_new_tokens": 8, "temperature": -0.1}, "temperature must be >= 0"),
        ({"max_new_tokens": 8, "top_p": 0}, r"top_p must lie in \(0, 1\]"),
    ],
)
def test_sampling_settings_are_checked_before_any_generation(monkeypatch, kwargs, message):
    calls = fake_vllm(monkeypatch)
    model = load_vllm("some/model")
    with pytest.raises(ValueError, match=message):
        model.generator(**kwargs)
    assert calls["params"] == [] and calls["prompts"] == []


def test_vllm_generator_wiring(monkeypatch):
    calls = fake_vllm(monkeypatch, answer=lambda prompt: prompt.upper())
    generate = load_vllm("/exports/iter_5", tensor_parallel=4, seed=3).generator(max_new_tokens=64)
    assert calls["llm"] == [{"model": "/exports/iter_5", "tokenizer": None, "tensor_parallel_size": 4, "dtype": "auto",
                             "seed": 3, "max_model_len": None, "gpu_memory_utilization": 0.9}]
    assert calls["params"] == [{"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "seed": 3}]
    assert generate(["a", "b"]) == ["A", "B"]
    assert calls["prompts"] == [["a", "b"]]


def test_base_model_eval_is_a_bridge_choice():
    with pytest.raises(ConfigError, match="eval.model=base .* needs engine=bridge"):
        load_recipe(RECIPES / "tiny_cpu.yaml", ["eval.model=base"])
    with pytest.raises(ConfigError, match="eval.model must be one of checkpoint, base"):
        load_recipe(MATH_RECIPE, ["eval.model=trained"])
