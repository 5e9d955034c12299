"""Run NeMo AutoModel's own LLM fine-tuning recipe on a YAML, as its ``main()`` does, on the CPU.

    python run_train_ft.py CONFIG.yaml STEPS.jsonl

Applies :mod:`cpu_redirects`, then builds ``TrainFinetuneRecipeForNextTokenPrediction`` from the
config through AutoModel's own argument parser and loader, runs ``setup()`` and
``run_train_validation_loop()``. Each optimizer step's metrics (what the recipe logs) are appended
to STEPS.jsonl, with the class of the loss the recipe trained with and its ``last_metrics`` (kept fraction, mean p) when it has them.
"""

from __future__ import annotations

import json
import sys

import cpu_redirects

cpu_redirects.apply()

from nemo_automodel.components.config._arg_parser import parse_args_and_load_config  # noqa: E402
from nemo_automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction  # noqa: E402


def as_number(value):
    return value.item() if hasattr(value, "item") else value


def main(config_path: str, records_path: str) -> None:
    cfg = parse_args_and_load_config(config_path, argv=[])
    recipe = TrainFinetuneRecipeForNextTokenPrediction(cfg)
    recipe.setup()
    step = recipe._run_train_optim_step

    def recorded_step(*args, **kwargs):
        sample = step(*args, **kwargs)
        record = {"step": sample.step, "loss_fn_class": type(recipe.loss_fn).__name__, **{k: as_number(v) for k, v in sample.metrics.items()
                                          if isinstance(as_number(v), (int, float))}}
        last = getattr(recipe.loss_fn, "last_metrics", None)
        if last:
            record["loss_fn"] = {k: as_number(v) for k, v in last.items()}
        with open(records_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return sample

    recipe._run_train_optim_step = recorded_step
    recipe.run_train_validation_loop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
