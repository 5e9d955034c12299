"""The objectives in Hugging Face ``transformers.Trainer`` and TRL's ``SFTTrainer`` (docs/hf.md).

- :class:`HFObjectiveLoss` (:mod:`.loss`): a ``compute_loss_func`` for every objective, with
  transformers' label shift, normalised by ``num_items_in_batch``; ``loss.callback()`` puts its
  mean p and kept fraction in the Trainer's logs (:mod:`.callback`);
- :class:`ObjectiveTrainerMixin` (:mod:`.trainer`): the objective on the fused output layer (no
  logits tensor) and the metrics logged inside ``Trainer.log``; ``ObjectiveTrainer`` and
  ``ObjectiveSFTTrainer`` are it on ``transformers.Trainer`` and ``trl.SFTTrainer``.

Importing this package imports neither transformers nor trl: the classes built on them are made on
first access.
"""

from .loss import HFObjectiveLoss, shift_labels
from .trainer import ObjectiveTrainerMixin, install_hidden_states_forward

_LAZY = {
    "ObjectiveTrainer": ("trainer", "objective_trainer"),
    "ObjectiveSFTTrainer": ("trainer", "objective_sft_trainer"),
    "ObjectiveMetricsCallback": ("callback", "metrics_callback_class"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, builder = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), builder)()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The lazily built classes are left out, so that `import *` imports neither transformers nor trl.
__all__ = ["HFObjectiveLoss", "ObjectiveTrainerMixin", "install_hidden_states_forward", "shift_labels"]
