from pathlib import Path

from nemo_beyond_nll.megatron.bridge import bridge_overrides, count_rows, describe, train_iters
from nemo_beyond_nll.recipe import load_recipe

RECIPE = Path(__file__).parents[2] / "recipes" / "qwen2.5-math-7b_math.yaml"


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
    assert o["checkpoint.save"] == "runs/qwen2.5-math-7b_math_neg_p/checkpoints"
    assert o["checkpoint.pretrained_checkpoint"] == "runs/base_megatron/Qwen--Qwen2.5-Math-7B"
    assert o["checkpoint.save_interval"] == "50"


def test_max_steps_sets_warmup_to_ten_percent():
    o = overrides_dict(load_recipe(RECIPE, ["trainer.max_steps=1000"]))
    assert o["train.train_iters"] == "1000" and o["scheduler.lr_warmup_iters"] == "100"


def test_user_bridge_overrides_come_last():
    cfg = load_recipe(RECIPE, ["bridge.overrides=['model.recompute_granularity=full','train.micro_batch_size=2']"])
    assert bridge_overrides(cfg)[-2:] == ["model.recompute_granularity=full", "train.micro_batch_size=2"]


def test_describe_without_bridge_says_so():
    text = describe(load_recipe(RECIPE))
    assert "from the row count of data.train" in text
    assert "megatron.bridge is not importable here" in text


def test_run_settings_of_the_base_recipe_survive_a_new_provider():
    from types import SimpleNamespace

    from nemo_beyond_nll.megatron.bridge import carry_over_run_settings

    base = SimpleNamespace(transformer_impl="transformer_engine", recompute_granularity="full",
                           num_layers=28, hidden_size=3584)
    new = SimpleNamespace(transformer_impl="local", recompute_granularity=None, num_layers=32, hidden_size=4096)
    copied = carry_over_run_settings(base, new)
    assert sorted(copied) == ["recompute_granularity", "transformer_impl"]
    assert new.transformer_impl == "transformer_engine" and new.recompute_granularity == "full"
    assert (new.num_layers, new.hidden_size) == (32, 4096)  # the architecture is the backbone's own
