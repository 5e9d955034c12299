"""The objectives as a NeMo loss: `NeMoObjectiveLoss`, a typed `nemo.core.classes.Loss`.

A thin subclass of the plain :class:`nemo_beyond_nll.ObjectiveLoss` (``torch.nn.Module``):
it adds NeMo's neural types, type checking and config round trip, and nothing to the math.

Needs nemo_toolkit (`pip install nemo_beyond_nll[nemo]`); the rest of the package does not.
NeMo only instantiates `_target_`s under its own packages, so build this loss with
`NeMoObjectiveLoss(...)` or `NeMoObjectiveLoss.from_config_dict(cfg)`, where `cfg` is a whole
config with `model.loss` / `model.loss_args` or a loss node with `objective` / `objective_args`
(the constructor's argument names, which `to_config_dict` writes).
"""

from __future__ import annotations

from typing import Optional

from nemo.core.classes import Loss, typecheck
from nemo.core.neural_types import LabelsType, LogitsType, LossType, MaskType, NeuralType
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, objective_from_config
from .core import module
from .core.vocab_parallel import ObjectiveOutput


NODE_KEYS = ("objective", "objective_args", "ignore_index")


def recipe_form(node: dict) -> DictConfig:
    """A loss node as the recipe's `model.loss`/`model.loss_args`, so that one parser checks both;
    a key the constructor does not take (a misspelt one would silently mean `nll`) is refused."""
    unknown = sorted(set(node) - set(NODE_KEYS))
    if unknown:
        raise ConfigError(f"loss node keys {unknown} are not among {list(NODE_KEYS)}")
    return OmegaConf.create({"model": {"loss": node.get("objective"), "loss_args": node.get("objective_args")}})


class NeMoObjectiveLoss(module.ObjectiveLoss, Loss):
    """Mean of a probability objective over kept tokens (not ignored, not masked, inside the threshold).

    Args:
        objective: objective name (canonical or the paper's reference name), default ``nll``.
        objective_args: that objective's arguments, e.g. ``{"threshold": 0.1}``.
        ignore_index: label id with no loss.
        tp_group: tensor-parallel group when the logits are this rank's vocabulary slice.
    """

    @property
    def input_types(self):
        return {
            "logits": NeuralType(("B", "T", "D"), LogitsType()),
            "labels": NeuralType(("B", "T"), LabelsType()),
            "loss_mask": NeuralType(("B", "T"), MaskType(), optional=True),
        }

    @property
    def output_types(self):
        return {"loss": NeuralType(elements_type=LossType())}

    def __init__(self, objective: str = "nll", objective_args: Optional[dict] = None, ignore_index: int = -100,
                 tp_group=None):
        super().__init__(objective, objective_args, ignore_index, tp_group)
        # The last call's per-token outputs, for callers of NeMo's keyword-only, typed forward.
        self.last_output: Optional[ObjectiveOutput] = None
        self._cfg = OmegaConf.create(
            {"objective": self.objective.name, "objective_args": self.objective.args, "ignore_index": ignore_index}
        )

    @classmethod
    def from_config_dict(cls, config, trainer=None, **kwargs):
        """Build from `model.loss`/`model.loss_args` of a whole config, or from a loss node
        (`objective`/`objective_args`/`ignore_index`)."""
        cfg = config if isinstance(config, DictConfig) else OmegaConf.create(config)
        ignore_index = OmegaConf.select(cfg, "ignore_index", default=-100)
        if OmegaConf.select(cfg, "model", default=None) is None:
            cfg = recipe_form(OmegaConf.to_container(cfg))
        objective = objective_from_config(cfg)
        return cls(objective.name, objective.args, ignore_index=ignore_index, **kwargs)

    @typecheck()
    def forward(self, logits, labels, loss_mask=None):
        self.last_output = self.per_token(logits, labels, loss_mask)
        return self.last_output.mean_over_kept()


__all__ = ["NeMoObjectiveLoss"]
