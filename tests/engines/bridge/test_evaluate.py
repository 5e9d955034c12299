"""The Bridge engine's GPU evaluation on CPU: vLLM, Megatron-Bridge and transformers are replaced by
small fakes that record how they are called (the real libraries need CUDA and are not installed here)."""

import json
import sys
import types
from pathlib import Path

import pytest

from nemo_beyond_nll.config import ConfigError
from nemo_beyond_nll.engines.bridge.evaluate import (
    describe_gpu_eval,
    export_hf_checkpoint,
    latest_checkpoint,
    run_gpu_eval,
    training_used_chat_template,
)
from nemo_beyond_nll.eval.backends import BackendUnavailable
from nemo_beyond_nll.recipe import load_recipe
from tests.data.fixtures import read_jsonl, write_jsonl
from tests.eval.benchmark_rows import FIXTURES
from tests.eval.test_backends import MATH_RECIPE, RECIPES, fake_vllm


def fake_bridge(monkeypatch):
    exports = []
    module = types.ModuleType("megatron.bridge")

    class AutoBridge:
        def __init__(self, hf_path):
            self.hf_path = hf_path

        @classmethod
        def from_hf_pretrained(cls, path, **kwargs):
            return cls(path)

        def export_ckpt(self, megatron_path, hf_path, show_progress=True, strict=False, source_path=None):
            exports.append((self.hf_path, megatron_path, hf_path))
            Path(hf_path).mkdir(parents=True)
            (Path(hf_path) / "config.json").write_text("{}")

    module.AutoBridge = AutoBridge
    monkeypatch.setitem(sys.modules, "megatron.bridge", module)
    return exports


def test_latest_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Megatron checkpoint"):
        latest_checkpoint(tmp_path / "missing")
    for name in ("iter_0000100", "iter_0000020", "iter_0000300.tmp", "other"):
        (tmp_path / name).mkdir()
    (tmp_path / "iter_0000900").write_text("a file, not a checkpoint")
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_0000100"


def test_export_once_per_checkpoint(tmp_path, monkeypatch):
    exports = fake_bridge(monkeypatch)
    cfg = load_recipe(MATH_RECIPE, [f"checkpoint.dir={tmp_path / 'run'}"])
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / "iter_0000050").mkdir(parents=True)
    (checkpoints / "iter_0000100").mkdir()
    stale = tmp_path / "run" / "hf" / "iter_0000100.partial"
    stale.mkdir(parents=True)  # an export that died half-way
    (stale / "model-00001.safetensors").write_text("half")

    target = export_hf_checkpoint(cfg)
    assert target == tmp_path / "run" / "hf" / "iter_0000100"
    assert exports == [("Qwen/Qwen2.5-Math-7B", str(checkpoints / "iter_0000100"), str(stale))]
    assert (target / "config.json").is_file() and not stale.exists()

    assert export_hf_checkpoint(cfg) == target  # done already: not exported again
    assert len(exports) == 1
    (checkpoints / "iter_0000200").mkdir()  # a newer checkpoint gets its own export
    assert export_hf_checkpoint(cfg) == tmp_path / "run" / "hf" / "iter_0000200" and len(exports) == 2


def test_export_without_bridge_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "megatron.bridge", None)
    cfg = load_recipe(MATH_RECIPE, [f"checkpoint.dir={tmp_path}"])
    (tmp_path / "checkpoints" / "iter_0000001").mkdir(parents=True)
    with pytest.raises(BackendUnavailable, match="needs Megatron-Bridge") as err:
        export_hf_checkpoint(cfg)
    assert "\n" not in str(err.value)


def test_training_used_chat_template(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cfg = load_recipe(MATH_RECIPE, [f"data.train={data / 'train.jsonl'}"])
    assert not training_used_chat_template(cfg)  # no report
    (data / "report.json").write_text(json.dumps({"options": {"chat_template": False}}))
    assert not training_used_chat_template(cfg)
    (data / "report.json").write_text(json.dumps({"options": {"chat_template": True}}))
    assert training_used_chat_template(cfg)


def _gpu_recipe(tmp_path, *overrides):
    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", FIXTURES[name][0]) for name in ("math500", "amc23")}
    cfg = load_recipe(MATH_RECIPE, [
        f"checkpoint.dir={tmp_path / 'run'}", "model.loss=neg_p", f"data.train={tmp_path / 'data' / 'train.jsonl'}",
        "eval.benchmarks=[math500,amc23]", f"eval.benchmark_files={{math500: {files['math500']}, amc23: {files['amc23']}}}",
        *overrides,
    ])
    (tmp_path / "run" / "checkpoints" / "iter_0000004").mkdir(parents=True, exist_ok=True)
    return cfg


def test_run_gpu_eval_end_to_end_with_fakes(tmp_path, monkeypatch, capsys):
    calls = fake_vllm(monkeypatch)  # every answer is \boxed{2}
    exports = fake_bridge(monkeypatch)
    cfg = _gpu_recipe(tmp_path)
    assert run_gpu_eval(cfg) == 0

    run = tmp_path / "run"
    assert exports == [("Qwen/Qwen2.5-Math-7B", str(run / "checkpoints" / "iter_0000004"),
                        str(run / "hf" / "iter_0000004.partial"))]
    assert calls["llm"][0]["model"] == str(run / "hf" / "iter_0000004")
    assert calls["llm"][0]["tensor_parallel_size"] == 2  # the recipe's model.tensor_parallel
    # the recipe's protocol: 16 samples at temperature 1, 4096 new tokens, one SamplingParams per benchmark
    assert calls["params"] == [{"n": 16, "temperature": 1.0, "top_p": 1.0, "max_tokens": 4096, "seed": 1234}] * 2
    assert len(calls["llm"]) == 1  # one model for every benchmark
    summary = json.loads((run / "summary.json").read_text())
    # math500's answers are 2 and \frac{1}{2}; amc23's 27 and 2.5
    assert summary["accuracy"] == {"math500": 0.5, "amc23": 0.0}
    assert summary["num_generations"] == {"math500": 16, "amc23": 16}
    assert summary["pass_at_k"]["math500"] == {"1": 0.5, "16": 0.5}
    assert summary["objective"] == "neg_p()" and summary["loss"] == "neg_p"
    assert [r["correct"] for r in read_jsonl(run / "eval" / "math500.jsonl")] == [True, False]
    assert calls["prompts"][0][0].startswith("What is $1+1$?\n\nPlease reason step by step")  # no template
    err = capsys.readouterr().err
    assert "math500: accuracy 50.0% (1/2), mean@16 50.0%, pass@16 50.0%" in err and "average 25.0%" in err


def test_run_gpu_eval_applies_the_training_chat_template(tmp_path, monkeypatch):
    calls = fake_vllm(monkeypatch)
    fake_bridge(monkeypatch)
    transformers = types.ModuleType("transformers")
    loaded_from = []

    class Tokenizer:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return f"<user>{messages[-1]['content']}<assistant>"

    class AutoTokenizer:
        @staticmethod
        def from_pretrained(path):
            loaded_from.append(path)
            return Tokenizer()

    transformers.AutoTokenizer = AutoTokenizer
    monkeypatch.setitem(sys.modules, "transformers", transformers)
    cfg = _gpu_recipe(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "report.json").write_text(json.dumps({"options": {"chat_template": True}}))

    assert run_gpu_eval(cfg) == 0
    assert loaded_from == [str(tmp_path / "run" / "hf" / "iter_0000004")]  # the exported tokenizer
    assert all(p.startswith("<user>") and p.endswith("<assistant>") for batch in calls["prompts"] for p in batch)
    records = read_jsonl(tmp_path / "run" / "eval" / "amc23.jsonl")
    assert not records[0]["prompt"].startswith("<user>")  # records keep the benchmark's prompt


def test_run_gpu_eval_reuses_an_export_made_elsewhere(tmp_path, monkeypatch):
    # Exported in the NeMo container, evaluated where vLLM is installed: Bridge is not needed again.
    calls = fake_vllm(monkeypatch)
    monkeypatch.setitem(sys.modules, "megatron.bridge", None)
    cfg = _gpu_recipe(tmp_path)
    (tmp_path / "run" / "hf" / "iter_0000004").mkdir(parents=True)
    assert run_gpu_eval(cfg) == 0
    assert calls["llm"][0]["model"] == str(tmp_path / "run" / "hf" / "iter_0000004")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["accuracy"] == {"math500": 0.5, "amc23": 0.0}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["eval.benchmarks=[]"], "eval.benchmarks is empty"),
        (["eval.benchmarks=[gsm8k]"], "eval: unknown benchmark 'gsm8k'"),
        (["eval.benchmark_files={amc23: /nonexistent.jsonl}"], "eval: file for benchmark 'amc23' not found"),
    ],
)
def test_run_gpu_eval_config_errors_come_before_any_gpu_work(tmp_path, monkeypatch, overrides, message):
    calls = fake_vllm(monkeypatch)
    exports = fake_bridge(monkeypatch)
    cfg = _gpu_recipe(tmp_path, *overrides)
    with pytest.raises(ConfigError, match=message):
        run_gpu_eval(cfg)
    assert exports == [] and calls["llm"] == []


def test_run_gpu_eval_wants_a_bridge_recipe():
    with pytest.raises(ConfigError, match="evaluates engine=bridge recipes"):
        run_gpu_eval(load_recipe(RECIPES / "tiny_cpu.yaml"))


def test_describe_gpu_eval_needs_no_gpu_library(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setitem(sys.modules, "megatron.bridge", None)
    cfg = _gpu_recipe(tmp_path, "eval.benchmarks=[math500,aime24,olympiadbench]", "eval.num_samples=5")
    run = tmp_path / "run"
    text = describe_gpu_eval(cfg)
    assert text.splitlines() == [
        "# GPU evaluation: export to Hugging Face format, generate with vLLM, grade",
        f"#   checkpoint {run / 'checkpoints' / 'iter_0000004'} -> {run / 'hf' / 'iter_0000004'}",
        "#   vLLM: tensor_parallel=2, chat template: no",
        f"#   math500 (math, first 5): {tmp_path / 'math500.jsonl'}; "
        "temperature=1, top_p=1, 16 per problem, max_new_tokens=4096",
        "#   aime24 (math, first 5): HuggingFaceH4/aime_2024 [train]; "
        "temperature=1, top_p=1, 16 per problem, max_new_tokens=4096",
        "#   olympiadbench (math, first 5): Hothan/OlympiadBench (OE_TO_maths_en_COMP) [train]; "
        "temperature=1, top_p=1, 16 per problem, max_new_tokens=4096",
        f"#   writes {run / 'eval'}/<benchmark>.jsonl and {run / 'summary.json'}",
    ]
    (run / "hf" / "iter_0000004").mkdir(parents=True)
    assert "(exported already)" in describe_gpu_eval(cfg)
    with pytest.raises(ConfigError, match="eval: unknown benchmark 'gsm8k'"):
        describe_gpu_eval(_gpu_recipe(tmp_path, "eval.benchmarks=[gsm8k]"))
    figfont = load_recipe(RECIPES / "qwen2.5-7b_figfont.yaml", [f"checkpoint.dir={tmp_path / 'none'}"])
    lines = describe_gpu_eval(figfont).splitlines()
    assert lines[1] == f"#   checkpoint: none yet in {tmp_path / 'none' / 'checkpoints'} (train first)"
    assert lines[3].startswith("#   figfont (figfont): reasoning_gym:figlet_font(size=500, seed=1000000000); greedy")


def test_run_gpu_eval_refuses_a_run_folder_in_use(tmp_path, monkeypatch):
    import subprocess
    import sys

    from nemo_beyond_nll.run_folder import RunLocked

    fake_vllm(monkeypatch)
    fake_bridge(monkeypatch)
    cfg = _gpu_recipe(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from nemo_beyond_nll.run_folder import "
                               "acquire; acquire(sys.argv[1], 'an eval'); print('locked', flush=True); time.sleep(600)",
                               str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match="`an eval`"):
            run_gpu_eval(cfg)
        assert not (tmp_path / "run" / "summary.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_base_model_eval_loads_the_backbone_and_exports_nothing(tmp_path, monkeypatch):
    calls = fake_vllm(monkeypatch)
    exports = fake_bridge(monkeypatch)
    cfg = _gpu_recipe(tmp_path, "eval.model=base", f"checkpoint.dir={tmp_path / 'base'}")
    assert "the untrained backbone" in describe_gpu_eval(cfg) and "Qwen/Qwen2.5-Math-7B" in describe_gpu_eval(cfg)
    assert run_gpu_eval(cfg) == 0  # no checkpoint in tmp_path/base: none is needed
    assert exports == [] and calls["llm"][0]["model"] == "Qwen/Qwen2.5-Math-7B"
    summary = json.loads((tmp_path / "base" / "summary.json").read_text())
    assert summary["objective"] == "base" and summary["loss"] == "base"
    assert summary["accuracy"] == {"math500": 0.5, "amc23": 0.0}
