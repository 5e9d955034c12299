import pytest
from omegaconf import OmegaConf

from nemo_beyond_nll import get_objective
from nemo_beyond_nll.config import ConfigError, apply_overrides, load_config, objective_from_config

RECIPE = """
model:
  loss: nll
  loss_args: {}
trainer:
  max_steps: 10
  lr: 5.0e-5
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path


def test_missing_loss_means_nll():
    assert objective_from_config(OmegaConf.create({})) == get_objective("nll")
    assert objective_from_config({"model": {"hidden": 8}}) == get_objective("nll")


def test_yaml_selects_objective(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  loss: neg_p_power\n  loss_args:\n    alpha: 4\n")
    assert objective_from_config(load_config(path)) == get_objective("neg_p_power", alpha=4)


def test_reference_name_in_yaml():
    assert objective_from_config({"model": {"loss": "OnlyTopP-0.1"}}) == get_objective("neg_p_threshold", threshold=0.1)


def test_hydra_overrides_select_objective(recipe):
    cfg = load_config(recipe, ["model.loss=neg_p_threshold", "model.loss_args.threshold=0.1",
                               "model.loss_args.keep=below", "trainer.max_steps=100"])
    assert objective_from_config(cfg) == get_objective("OnlyBottomP-0.1")
    assert cfg.trainer.max_steps == 100


def test_hydra_overrides_select_log_one_minus_p(recipe):
    assert objective_from_config(load_config(recipe, ["model.loss=log_one_minus_p"])) == get_objective(
        "log_one_minus_p", offset=0.0)
    cfg = load_config(recipe, ["model.loss=log_one_minus_p", "model.loss_args.offset=1e-3"])
    assert objective_from_config(cfg).offset == 1e-3
    assert objective_from_config({"model": {"loss": "UnlikehoodTop-0.5"}}) == get_objective(
        "log_one_minus_p_threshold", threshold=0.5, offset=1e-3)


def test_hydra_overrides_select_adaptive_power(recipe):
    assert objective_from_config(load_config(recipe, ["model.loss=adaptive_power"])) == get_objective(
        "adaptive_power", min_power=1e-3)
    cfg = load_config(recipe, ["model.loss=adaptive_power", "model.loss_args.min_power=0.05"])
    assert objective_from_config(cfg).min_power == 0.05


def test_add_force_add_and_delete(recipe):
    cfg = load_config(recipe, ["+trainer.seed=3", "++trainer.lr=1e-4", "~trainer.max_steps"])
    assert cfg.trainer.seed == 3 and cfg.trainer.lr == 1e-4 and "max_steps" not in cfg.trainer


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.max_step=5"], "unknown config key 'trainer.max_step'"),
        (["+trainer.lr=1"], "cannot add 'trainer.lr'"),
        (["~trainer.nothing"], "cannot delete 'trainer.nothing'"),
        (["trainer.max_steps=1,2"], "sweep"),
        (["trainer.max_steps"], "bad override"),
    ],
)
def test_bad_overrides_are_one_line_errors(recipe, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(recipe, overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.loss=focal"], "unknown objective 'focal'"),
        (["model.loss=neg_p_threshold", "model.loss_args.threshold=2"], "threshold"),
        (["model.loss_args.alpha=2"], "does not take argument 'alpha'"),
        (["model.loss_args=5"], "must be a mapping"),
        (["model.loss=log_one_minus_p", "model.loss_args.offset=-1"], "'offset' must be >= 0"),
        (["model.loss=adaptive_power", "model.loss_args.min_power=0"], "'min_power' must lie in \\(0, 1\\]"),
        (["model.loss=adaptive_power", "model.loss_args.min_power=2"], "'min_power' must lie in \\(0, 1\\]"),
    ],
)
def test_bad_objective_in_config(recipe, overrides, message):
    cfg = load_config(recipe, overrides)
    with pytest.raises(ConfigError, match=message):
        objective_from_config(cfg)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_apply_overrides_in_memory():
    cfg = apply_overrides(OmegaConf.create({"model": {"loss": "nll"}}), ["model.loss=dft"])
    assert objective_from_config(cfg).name == "dft"


TINY = str(__import__("pathlib").Path(__file__).parents[1] / "recipes" / "tiny_cpu.yaml")


@pytest.mark.parametrize("override, message", [
    ("+trainer.max_step=10", "unknown config key 'trainer.max_step' (did you mean 'trainer.max_steps'?)"),
    ("++trainer.max_step=10", "unknown config key 'trainer.max_step' (did you mean 'trainer.max_steps'?)"),
    ("+cluster.name=x", "unknown config key 'cluster.name' (not a key of the schema; new keys only under"),
    ("+bridge.extra=1", "unknown config key 'bridge.extra'"),
])
def test_plus_adds_keys_only_inside_free_form_mappings_of_a_recipe(override, message):
    from nemo_beyond_nll.recipe import load_recipe

    with pytest.raises(ConfigError) as err:
        load_recipe(TINY, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_free_form_mappings_take_new_keys_with_or_without_plus(tmp_path):
    from nemo_beyond_nll.recipe import load_recipe

    cfg = load_recipe(TINY, ["model.loss=neg_p_threshold", "+model.loss_args.threshold=0.2",
                             f"+eval.benchmark_files.math500={tmp_path}/m.jsonl", "++trainer.max_steps=5"])
    assert cfg.model.loss_args.threshold == 0.2 and cfg.eval.benchmark_files.math500.endswith("m.jsonl")
    assert cfg.trainer.max_steps == 5


@pytest.mark.parametrize("text, where", [
    ("model: [unclosed\n", ":2:1: expected ',' or ']'"),
    ("model:\n  loss: nll\n   bad: 1\n", ":3:7: mapping values are not allowed here"),
    ("x: \"unterminated\n", ":2:1: found unexpected end of stream"),
    ("a:\n\tb: 1\n", ":2:1: found character '\\t' that cannot start any token"),
])
def test_yaml_errors_name_line_and_column(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"cannot parse {path}{where}") and "\n" not in str(err.value)


@pytest.mark.parametrize("override", ["trainer.max_steps=[1", "a=b=c", "trainer.max_steps=}", "trainer.max_steps='x"])
def test_bad_override_grammar_is_one_line_naming_it(recipe, override):
    with pytest.raises(ConfigError) as err:
        load_config(recipe, ["model.loss=nll", override])
    assert str(err.value).startswith(f"bad override {override!r}: ") and "\n" not in str(err.value)
    assert "hydra.cc" not in str(err.value)


@pytest.mark.parametrize("text, key, lines", [
    ("model:\n  loss: nll\n  loss_args: {}\n  loss: neg_p\n", "model.loss", (2, 4)),
    ("a: 1\nb: {x: 1, x: 2}\na: 3\n", "b.x", (2, 2)),
    ("runs:\n  - {name: a}\n  - name: b\n    name: c\n", "runs[1].name", (3, 4)),
])
def test_duplicate_yaml_key_is_one_line_naming_key_and_both_lines(tmp_path, text, key, lines):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"duplicate key '{key}' at lines {lines[0]} and {lines[1]}" in message
    assert str(path) in message and "\n" not in message


def test_yaml_merge_keys_and_distinct_nested_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {lr: 1}\nrun:\n  <<: *b\n  seed: 2\nother:\n  seed: 3\n")
    cfg = load_config(path)
    assert cfg.run.lr == 1 and cfg.run.seed == 2 and cfg.other.seed == 3
