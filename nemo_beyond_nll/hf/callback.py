"""The ``TrainerCallback`` that puts an :class:`~.loss.ObjectiveLoss`'s mean p and kept fraction in the logs.

The Trainer appends a copy of each log to ``state.log_history`` and then calls ``on_log`` on its
callbacks in order, with the reporting integrations (``report_to``: TensorBoard, W&B, ...) first
and the callbacks given to the Trainer after them. So this callback adds the metrics to the
``log_history`` entry just written and to ``logs`` (what the callbacks after it see: the progress
bar or printer); the integrations listed before it do not see them. :class:`~.trainer.ObjectiveTrainerMixin`
adds them inside ``Trainer.log`` instead, before anything sees the log.

``transformers`` is imported when the first callback is built, never when this module is imported.
"""

from __future__ import annotations

from .loss import EVAL, TRAIN

_CLASSES = {}


def metrics_for_log(loss, logs: dict) -> dict:
    """The metrics to add to ``logs``: evaluation metrics (``eval_`` prefix) for an evaluation log,
    else training metrics; empty when ``loss`` ran no call of that kind since the last log."""
    evaluating = any(key.startswith("eval_") for key in logs)
    metrics = loss.pop_metrics(EVAL if evaluating else TRAIN) or {}
    return {("eval_" if evaluating else "") + key: value for key, value in metrics.items()}


def metrics_callback_class() -> type:
    if "callback" not in _CLASSES:
        from transformers import TrainerCallback

        class ObjectiveMetricsCallback(TrainerCallback):
            """Adds ``mean_prob`` and ``kept_fraction`` (and their ``eval_`` forms) to the Trainer's logs."""

            def __init__(self, loss):
                self.loss = loss

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs is None:
                    return
                metrics = metrics_for_log(self.loss, logs)
                logs.update(metrics)
                if state.log_history:
                    state.log_history[-1].update(metrics)  # the entry the Trainer appended for these logs

        ObjectiveMetricsCallback.__module__ = __name__
        _CLASSES["callback"] = ObjectiveMetricsCallback
    return _CLASSES["callback"]


def metrics_callback(loss):
    return metrics_callback_class()(loss)
