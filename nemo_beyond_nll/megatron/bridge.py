"""Run a recipe on Megatron-Bridge (GPU, NGC NeMo container): Bridge trains, the objective is ours.

The recipe's `bridge.recipe` names one of Bridge's own SFT recipe functions (which sets up the
architecture's kernels, precision and parallel defaults); this module then points it at the recipe's
backbone and data, applies the recipe's training settings as Hydra overrides on Bridge's
ConfigContainer (`bridge_overrides`, pure and unit-tested), and calls Bridge's `finetune` with
`ObjectiveForwardStep`, which installs the objective and reduces over kept tokens.

Megatron-Bridge needs Python 3.12 and CUDA, so every import of it is inside a function.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import List, Optional

from ..config import ConfigError, objective_from_config

DECAY_STYLE = {"cosine": "cosine", "linear": "linear", "constant": "constant"}

# Settings of the base recipe's model provider that tune the run rather than describe the
# architecture: they are kept when the provider is rebuilt for the recipe's own backbone.
RUN_SETTINGS = (
    "transformer_impl", "attention_backend", "recompute_granularity", "recompute_method",
    "recompute_num_layers", "recompute_modules", "cuda_graph_impl", "cuda_graph_scope",
    "bias_activation_fusion", "masked_softmax_fusion", "persist_layer_norm", "apply_rope_fusion",
    "gradient_accumulation_fusion", "fine_grained_activation_offloading", "offload_modules",
)


def carry_over_run_settings(base_provider, provider) -> list:
    """Copy RUN_SETTINGS that both providers have from `base_provider` to `provider`; returns their names."""
    copied = []
    for name in RUN_SETTINGS:
        if hasattr(base_provider, name) and hasattr(provider, name):
            setattr(provider, name, getattr(base_provider, name))
            copied.append(name)
    return copied


def count_rows(path: Optional[str]) -> Optional[int]:
    """Number of examples in a JSONL file, or None when there is no such file (yet)."""
    if not path or not Path(path).is_file():
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def train_iters(cfg) -> Optional[int]:
    """Optimizer steps: trainer.max_steps, else epochs over the training file; None if unknown yet."""
    if cfg.trainer.max_steps is not None:
        return cfg.trainer.max_steps
    rows = count_rows(cfg.data.train)
    if rows is None:
        return None
    return max(1, math.ceil(cfg.trainer.epochs * rows / cfg.trainer.global_batch_size))


def run_paths(cfg) -> dict:
    run_dir = Path(cfg.checkpoint.dir)
    return {
        "run": run_dir,
        "checkpoints": run_dir / "checkpoints",
        "tensorboard": run_dir / "tensorboard",
        "dataset_root": run_dir / "dataset",
        # One converted backbone serves every objective's run.
        "pretrained": Path(cfg.model.pretrained_checkpoint
                           or Path("runs/base_megatron") / str(cfg.model.hf_path).replace("/", "--")),
    }


def bridge_overrides(cfg, iters: Optional[int] = None) -> List[str]:
    """The recipe's settings as Hydra overrides on Bridge's ConfigContainer (without Bridge)."""
    iters = train_iters(cfg) if iters is None else iters
    paths = run_paths(cfg)
    m, t, o = cfg.model, cfg.trainer, cfg.optim
    out = [
        f"model.tensor_model_parallel_size={m.tensor_parallel}",
        f"model.pipeline_model_parallel_size={m.pipeline_parallel}",
        f"model.virtual_pipeline_model_parallel_size={'null' if m.virtual_pipeline_parallel is None else m.virtual_pipeline_parallel}",
        f"model.context_parallel_size={m.context_parallel}",
        f"model.sequence_parallel={str(m.sequence_parallel).lower()}",
        f"model.seq_length={m.seq_length}",
        f"dataset.seq_length={m.seq_length}",
        # The objective's loss function returns kept-token counts; Bridge must divide by them.
        "model.calculate_per_token_loss=true",
        "model.cross_entropy_loss_fusion=false",
        f"train.global_batch_size={t.global_batch_size}",
        f"train.micro_batch_size={t.micro_batch_size}",
        f"rng.seed={t.seed}",
        f"optimizer.lr={o.lr}",
        f"optimizer.min_lr={o.min_lr}",
        f"optimizer.adam_beta1={o.betas[0]}",
        f"optimizer.adam_beta2={o.betas[1]}",
        f"optimizer.weight_decay={o.weight_decay}",
        f"optimizer.clip_grad={o.grad_clip}",
        f"scheduler.lr_decay_style={DECAY_STYLE[o.schedule]}",
        f"checkpoint.pretrained_checkpoint={paths['pretrained']}",
        f"checkpoint.save={paths['checkpoints']}",
        f"checkpoint.load={paths['checkpoints']}",
        f"checkpoint.save_interval={t.save_interval}",
        f"logger.log_interval={t.log_interval}",
        f"logger.tensorboard_dir={paths['tensorboard']}",
    ]
    if iters is not None:
        out += [
            f"train.train_iters={iters}",
            f"scheduler.lr_decay_iters={iters}",
            f"scheduler.lr_warmup_iters={int(o.warmup_ratio * iters)}",
        ]
    if t.eval_interval:
        out.append(f"validation.eval_interval={t.eval_interval}")
    return out + list(cfg.bridge.overrides)


def describe(cfg) -> str:
    """The Bridge side of a dry run: the overrides, and Bridge's resolved config where Bridge imports."""
    iters = train_iters(cfg)
    lines = [f"# Megatron-Bridge: base recipe {cfg.bridge.recipe}, backbone {cfg.model.hf_path}"]
    if iters is None:
        lines.append(f"# train_iters: from the row count of data.train ({cfg.data.train}) at launch")
    lines += [f"#   {o}" for o in bridge_overrides(cfg, iters)]
    try:
        importlib.import_module("megatron.bridge")
    except ImportError as err:
        lines.append(f"# megatron.bridge is not importable here ({err}); the container has it")
        return "\n".join(lines) + "\n"
    from megatron.bridge.training.utils.omegaconf_utils import create_omegaconf_dict_config
    from omegaconf import OmegaConf

    container = build_config(cfg, write_dataset_links=False)
    resolved, _ = create_omegaconf_dict_config(container)
    return "\n".join(lines) + "\n# Megatron-Bridge ConfigContainer:\n" + OmegaConf.to_yaml(resolved)


def _recipe_function(dotted: Optional[str]):
    if not dotted:
        raise ConfigError("bridge.recipe is required with engine=bridge (a Megatron-Bridge recipe function)")
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"bridge.recipe {dotted!r} cannot be loaded: {err}") from None


def _link_dataset(cfg, root: Path) -> None:
    """Bridge reads <root>/training.jsonl and validation.jsonl: link the recipe's files there."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in (("training.jsonl", cfg.data.train), ("validation.jsonl", cfg.data.validation)):
        if source is None:
            continue
        if not Path(source).is_file():
            raise ConfigError(f"data file not found: {source} (build it with the data builders first)")
        link = root / name
        link.unlink(missing_ok=True)
        link.symlink_to(Path(source).resolve())


def _dataset_config(cfg, root: Path):
    """Bridge's prompt/completion SFT dataset over our JSONL (the loss on the completion)."""
    seq_length, seed = cfg.model.seq_length, cfg.trainer.seed
    try:  # Megatron-Bridge 0.6 and later
        from megatron.bridge.data.builders.gpt_sft import GPTSFTDatasetConfig
        from megatron.bridge.data.sft_processing import PromptCompletionSFTPreprocessingConfig
    except ImportError:  # 0.4 / 0.5 (NeMo containers 26.02 - 26.06)
        from megatron.bridge.training.config import FinetuningDatasetConfig

        return FinetuningDatasetConfig(
            dataset_root=root, seq_length=seq_length, seed=seed, do_test=False,
            dataset_kwargs={"prompt_template": "{prompt}{completion}", "label_key": "completion",
                            "truncation_field": "prompt"},
        )
    return GPTSFTDatasetConfig(
        seq_length=seq_length, dataset_root=root, seed=seed, do_test=False, dataloader_type="batch",
        preprocessing=PromptCompletionSFTPreprocessingConfig(prompt_column="prompt", completion_column="completion"),
    )


def build_config(cfg, *, write_dataset_links: bool = True):
    """Bridge's ConfigContainer for the recipe (needs Megatron-Bridge)."""
    from megatron.bridge import AutoBridge
    from megatron.bridge.training.utils.omegaconf_utils import process_config_with_overrides

    container = _recipe_function(cfg.bridge.recipe)()
    provider = AutoBridge.from_hf_pretrained(cfg.model.hf_path).to_megatron_provider(load_weights=False)
    carry_over_run_settings(container.model, provider)
    container.model = provider
    container.tokenizer.tokenizer_model = cfg.model.hf_path
    root = run_paths(cfg)["dataset_root"]
    if write_dataset_links:
        _link_dataset(cfg, root)
    container.dataset = _dataset_config(cfg, root)
    return process_config_with_overrides(container, cli_overrides=bridge_overrides(cfg))


def import_checkpoint(cfg) -> Path:
    """Convert the recipe's Hugging Face backbone to a Megatron checkpoint once (run on one process)."""
    from megatron.bridge import AutoBridge

    target = run_paths(cfg)["pretrained"]
    if target.exists():
        return target
    AutoBridge.import_ckpt(cfg.model.hf_path, str(target))
    return target


def run_sft(cfg) -> int:
    """Fine-tune with Bridge's `finetune` and the recipe's objective; call under torchrun."""
    from megatron.bridge.training.finetune import finetune

    from .dataset_helpers import use_prebuilt_dataset_helpers
    from .step import ObjectiveForwardStep

    if not run_paths(cfg)["pretrained"].exists():
        raise ConfigError(
            f"no Megatron checkpoint at {run_paths(cfg)['pretrained']}: "
            f"run `nemo-beyond-nll import --config <recipe>` once first"
        )
    if train_iters(cfg) is None:
        raise ConfigError(f"data.train {cfg.data.train!r} not found: cannot size the schedule")
    step = ObjectiveForwardStep(objective_from_config(cfg), cfg.trainer.hist_interval, cfg.model.loss_fusion)
    use_prebuilt_dataset_helpers()
    finetune(build_config(cfg), step)
    return 0
