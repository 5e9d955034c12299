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
