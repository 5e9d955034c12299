"""The objectives as a NeMo loss: `ProbabilityObjectiveLoss`, a typed `nemo.core.classes.Loss`.

Needs nemo_toolkit (`pip install nemo_beyond_nll[nemo]`); the rest of the package does not.
NeMo only instantiates `_target_`s under its own packages, so build this loss with
`ProbabilityObjectiveLoss(...)` or `ProbabilityObjectiveLoss.from_config_dict(cfg)`, where `cfg`
is a whole config with `model.loss` / `model.loss_args` or a loss node with `loss` / `loss_args`.
"""

from __future__ import annotations

from typing import Optional

from nemo.core.classes import Loss, typecheck
from nemo.core.neural_types import LabelsType, LogitsType, LossType, MaskType, NeuralType
from omegaconf import DictConfig, OmegaConf

from .config import objective_from_config
from .objectives import get_objective
from .vocab_parallel import ObjectiveOutput, vocab_parallel_objective


class ProbabilityObjectiveLoss(Loss):
    """Mean of a probability objective over kept tokens (not ignored, not masked, inside the threshold).

    Args:
        loss: objective name (canonical or the paper's reference name), default ``nll``.
        loss_args: that objective's arguments, e.g. ``{"threshold": 0.1}``.
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

    def __init__(self, loss: str = "nll", loss_args: Optional[dict] = None, ignore_index: int = -100, tp_group=None):
        super().__init__()
        loss_args = dict(loss_args or {})
        self.objective = get_objective(loss, **loss_args)
        self.ignore_index = ignore_index
        self.tp_group = tp_group
        self.last_output: Optional[ObjectiveOutput] = None
        self._cfg = OmegaConf.create(
            {"loss": self.objective.name, "loss_args": self.objective.args, "ignore_index": ignore_index}
        )

    @classmethod
    def from_config_dict(cls, config, trainer=None, **kwargs):
        """Build from `model.loss`/`model.loss_args` of a whole config, or from a loss node."""
        cfg = config if isinstance(config, DictConfig) else OmegaConf.create(config)
        ignore_index = OmegaConf.select(cfg, "ignore_index", default=-100)
        if OmegaConf.select(cfg, "model", default=None) is None:
            cfg = OmegaConf.create({"model": OmegaConf.to_container(cfg)})
        objective = objective_from_config(cfg)
        return cls(objective.name, objective.args, ignore_index=ignore_index, **kwargs)

    @typecheck()
    def forward(self, logits, labels, loss_mask=None):
        out = vocab_parallel_objective(
            logits, labels, self.objective, tp_group=self.tp_group, ignore_index=self.ignore_index
        )
        kept = out.kept if loss_mask is None else out.kept & loss_mask.bool()
        self.last_output = ObjectiveOutput(out.loss, out.prob, kept)
        return (out.loss * kept).sum() / kept.sum().clamp(min=1)

    def extra_repr(self) -> str:
        return str(self.objective)


__all__ = ["ProbabilityObjectiveLoss"]
