from pathlib import Path
from types import SimpleNamespace

import pytest

from nemo_beyond_nll.config import ConfigError
from nemo_beyond_nll.engines.bridge import finetune as bridge
from nemo_beyond_nll.engines.bridge.finetune import (
    backbone_source,
    base_recipe_on_backbone,
    bridge_overrides,
    count_rows,
    describe_parts,
    precision,
    train_iters,
)
from nemo_beyond_nll.recipe import load_recipe

RECIPE = Path(__file__).parents[3] / "recipes" / "qwen2.5-math-7b_math.yaml"


def overrides_dict(cfg):
    return dict(o.split("=", 1) for o in bridge_overrides(cfg))


def test_training_settings_translate_to_bridge_keys(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join('{"prompt": "q", "completion": "a"}\n' for _ in range(1000)) + "\n")
    cfg = load_recipe(RECIPE, [f"data.train={train}", "model.loss=neg_p", "trainer.save_interval=50"])
    o = overrides_dict(cfg)
    assert count_rows(str(train)) == 1000
    assert train_iters(cfg) == 4  # ceil(1 epoch * 1000 rows / 256)
    assert o["train.train_iters"] == "4" and o["scheduler.lr_decay_iters"] == "4"
    assert o["scheduler.lr_warmup_iters"] == "0"
    assert o["model.tensor_model_parallel_size"] == "2" and o["model.sequence_parallel"] == "true"
    assert o["optimizer.lr"] == "5e-05" and o["optimizer.adam_beta2"] == "0.95"
    assert o["optimizer.weight_decay"] == "0.01" and o["optimizer.clip_grad"] == "1.0"
    assert o["model.calculate_per_token_loss"] == "true"
    assert o["checkpoint.save"] == o["checkpoint.load"] == "runs/qwen2.5-math-7b_math_neg_p/checkpoints"
    assert o["checkpoint.pretrained_checkpoint"] == "runs/base_megatron/Qwen--Qwen2.5-Math-7B"
    assert o["checkpoint.save_interval"] == "50"


def test_max_steps_sets_warmup_to_ten_percent():
    o = overrides_dict(load_recipe(RECIPE, ["trainer.max_steps=1000"]))
    assert o["train.train_iters"] == "1000" and o["scheduler.lr_warmup_iters"] == "100"


def test_user_bridge_overrides_come_last():
    cfg = load_recipe(RECIPE, ["bridge.overrides=['model.recompute_granularity=full','train.micro_batch_size=2']"])
    assert bridge_overrides(cfg)[-2:] == ["model.recompute_granularity=full", "train.micro_batch_size=2"]


def test_per_token_loss_sums_in_the_data_parallel_reduction():
    o = overrides_dict(load_recipe(RECIPE))
    assert o["model.calculate_per_token_loss"] == "true" and o["ddp.average_in_collective"] == "false"


def test_weight_decay_reaches_the_scheduler_that_applies_it():
    o = overrides_dict(load_recipe(RECIPE, ["optim.weight_decay=0.05"]))
    assert o["optimizer.weight_decay"] == o["scheduler.start_weight_decay"] == o["scheduler.end_weight_decay"] == "0.05"
    assert o["scheduler.weight_decay_incr_style"] == "constant"


def test_eval_interval_zero_switches_validation_off():
    o = overrides_dict(load_recipe(RECIPE))
    assert o["validation.eval_interval"] == "null" and o["validation.eval_iters"] == "0"
    o = overrides_dict(load_recipe(RECIPE, ["trainer.eval_interval=25"]))
    assert o["validation.eval_interval"] == "25" and "validation.eval_iters" not in o


def test_bf16_selects_bridges_mixed_precision():
    assert precision(load_recipe(RECIPE)) == "bf16_mixed"
    assert precision(load_recipe(RECIPE, ["optim.bf16=false"])) == "fp32"


@pytest.mark.parametrize("failure", [ImportError("No module named 'megatron.bridge'"),
                                     OSError("libtransformer_engine.so: cannot open shared object file")])
def test_describe_without_an_importable_bridge_says_so_in_one_line(monkeypatch, failure):
    def broken():
        raise failure

    monkeypatch.setattr(bridge, "_import_bridge", broken)
    text = "".join(describe_parts(load_recipe(RECIPE)))
    assert "from the row count of data.train" in text and "#   model.tensor_model_parallel_size=2" in text
    lines = [line for line in text.splitlines() if "megatron.bridge is not importable here" in line]
    assert len(lines) == 1 and type(failure).__name__ in lines[0] and "Traceback" not in text


class _Bridge:
    """Stand-ins for AutoBridge and a provider (the real ones are tested in tests/bridge)."""

    def __init__(self, **architecture):
        self.architecture = architecture

    @classmethod
    def from_hf_pretrained(cls, path, **kwargs):
        raise AssertionError(f"the base recipe resolved {path} itself")

    def to_megatron_provider(self, load_weights=False):
        return SimpleNamespace(transformer_impl="local", recompute_granularity=None, **self.architecture)


def test_the_base_recipe_runs_on_our_backbone():
    def base_recipe():  # what Bridge's SFT recipe functions do
        model = _Bridge.from_hf_pretrained("Qwen/Qwen2.5-7B").to_megatron_provider(load_weights=False)
        model.transformer_impl, model.recompute_granularity = "transformer_engine", "full"
        return SimpleNamespace(model=model)

    ours = _Bridge(num_layers=32, hidden_size=4096)
    container = base_recipe_on_backbone(base_recipe, _Bridge, ours)
    # The base recipe's run settings, on the backbone's own architecture.
    assert container.model.transformer_impl == "transformer_engine" and container.model.recompute_granularity == "full"
    assert (container.model.num_layers, container.model.hidden_size) == (32, 4096)
    with pytest.raises(AssertionError, match="resolved x itself"):  # the class is as it was
        _Bridge.from_hf_pretrained("x")


def test_a_base_recipe_without_autobridge_cannot_be_pointed_at_the_backbone():
    with pytest.raises(ConfigError, match="does not build its model with AutoBridge"):
        base_recipe_on_backbone(lambda: SimpleNamespace(model=None), _Bridge, _Bridge(), "pkg.recipe")


def test_a_local_backbone_folder_needs_its_config(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert backbone_source(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ConfigError, match="no config.json in that folder"):
        backbone_source(str(tmp_path / "missing"))


def test_bridge_sft_locks_its_run_folder_before_anything_else(tmp_path):
    import subprocess
    import sys

    from nemo_beyond_nll.run_folder import RunLocked

    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from nemo_beyond_nll.run_folder import "
                               "acquire; acquire(sys.argv[1], 'first'); print('locked', flush=True); time.sleep(600)",
                               str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = load_recipe(str(RECIPE), [f"checkpoint.dir={run_dir}"])
        with pytest.raises(RunLocked, match=rf"in use by pid {holder.pid} .*`first`"):
            bridge.run_sft(cfg)  # refused before Megatron-Bridge is imported or the checkpoint looked for
    finally:
        holder.kill()
        holder.wait()


def test_the_engine_imports_a_foreign_recipe_function_only_when_trusted(tmp_path, monkeypatch):
    # A module that records its import: refused, it must not even be imported.
    (tmp_path / "foreign_recipe_module.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('imported').touch()\ndef recipe():\n    return 'called'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="set bridge.trust_recipe_code=true"):
        bridge._recipe_function("foreign_recipe_module.recipe")
    assert not (tmp_path / "imported").exists()
    assert bridge._recipe_function("foreign_recipe_module.recipe", trusted=True)() == "called"
    assert (tmp_path / "imported").exists()


@pytest.fixture
def bridge_stubbed(monkeypatch):
    """run_sft with Megatron-Bridge stubbed at its boundary: `finetune` records its calls, the
    ConfigContainer is a name. Returns the list of calls."""
    import sys
    import types

    calls = []
    modules = {name: types.ModuleType(name) for name in
               ("megatron.bridge", "megatron.bridge.training", "megatron.bridge.training.finetune")}
    modules["megatron.bridge.training.finetune"].finetune = lambda container, step: calls.append((container, step))
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(bridge, "build_config", lambda cfg: "container")
    monkeypatch.setattr("nemo_beyond_nll.engines.bridge.dataset_helpers.use_prebuilt_dataset_helpers", lambda: False)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    return calls


def test_bridge_sft_keeps_the_config_history_and_refuses_what_its_checkpoint_depends_on(tmp_path, bridge_stubbed,
                                                                                          capsys, monkeypatch):
    from nemo_beyond_nll.run_folder import RunFolder, RunRefused
    from nemo_beyond_nll.utils.files import read_jsonl

    run_dir, base = tmp_path / "run", tmp_path / "base"
    base.mkdir()
    common = [f"checkpoint.dir={run_dir}", f"model.pretrained_checkpoint={base}", "trainer.max_steps=10"]
    assert bridge.run_sft(load_recipe(str(RECIPE), common)) == 0
    folder = RunFolder(run_dir)
    first = folder.config.read_text()
    assert "max_steps: 10" in first and len(bridge_stubbed) == 1

    # A rerun with another schedule: the earlier config kept, the change recorded and printed.
    assert bridge.run_sft(load_recipe(str(RECIPE), common + ["trainer.max_steps=20"])) == 0
    assert folder.earlier_config(1).read_text() == first
    assert read_jsonl(folder.history)[-1]["changes"] == {"trainer.max_steps": [10, 20]}
    assert f"{run_dir}: trainer.max_steps: 10 -> 20 (earlier config kept as config.1.yaml)" in capsys.readouterr().err

    # Once Bridge has saved a checkpoint, the objective may not change under it.
    (folder.checkpoints / "iter_0000020").mkdir(parents=True)
    with pytest.raises(RunRefused, match=r"model.loss \('nll' -> 'neg_p'\)"):
        bridge.run_sft(load_recipe(str(RECIPE), common + ["trainer.max_steps=20", "model.loss=neg_p"]))
    assert len(bridge_stubbed) == 2  # refused before Bridge's finetune

    # Only global rank 0 writes the run folder.
    monkeypatch.setenv("RANK", "1")
    assert bridge.run_sft(load_recipe(str(RECIPE), common + ["trainer.max_steps=30"])) == 0
    assert "max_steps: 20" in folder.config.read_text() and len(read_jsonl(folder.history)) == 1
