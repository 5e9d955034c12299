"""Run a recipe on Megatron-Bridge (GPU, NGC NeMo container): Bridge trains, the objective is ours.

The recipe's `bridge.recipe` names one of Bridge's own SFT recipe functions (which sets up the
architecture's kernels, precision and parallel defaults); this module runs it on the recipe's own
backbone (`model.hf_path`: every AutoBridge request of the function is answered with it), points it
at the recipe's data, applies the recipe's training settings as Hydra overrides on Bridge's
ConfigContainer (`bridge_overrides`, pure and unit-tested) and optim.bf16 as Bridge's mixed
precision, checks the result with Bridge's own ConfigContainer.validate(), and calls Bridge's
`finetune` with `ObjectiveForwardStep`, which installs the objective and reduces over kept tokens.

Megatron-Bridge needs Python 3.12 (and CUDA to train), so every import of it is inside a function."""

from __future__ import annotations

import copy
import enum
import importlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

from ...config import ConfigError, check_started_world, is_auto, objective_from_config, recipe_code_problem
from ...data.schedule import optimizer_steps
from ...run_folder import RunFolder, held, record_config

# Without the training file (a dry run before the data is built) the schedule's length is unknown:
# Bridge's validate() runs with this nominal length, and the printed config shows AT_LAUNCH instead.
NOMINAL_TRAIN_ITERS = 1000
AT_LAUNCH = "<computed at launch from the row count of data.train>"
# The ConfigContainer fields that follow from train_iters (shown as AT_LAUNCH without the data file).
SCHEDULE_FIELDS = {
    "train": ("train_iters",),
    "scheduler": ("lr_decay_iters", "lr_warmup_iters", "lr_decay_steps", "lr_warmup_steps", "wd_incr_steps"),
}


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
    return optimizer_steps(rows, cfg.trainer.epochs, cfg.trainer.global_batch_size,
                           cfg.data.drop_last)


def pretrained_checkpoint(cfg) -> Path:
    """The Megatron checkpoint of the recipe's backbone: model.pretrained_checkpoint, else the one
    `import` converts (outside the run folder: one converted backbone serves every objective's run)."""
    return Path(cfg.model.pretrained_checkpoint
                or Path("runs/base_megatron") / str(cfg.model.hf_path).replace("/", "--"))


def precision(cfg) -> str:
    """Bridge's mixed-precision recipe for optim.bf16: `bf16_mixed`, or `fp32` (no mixed precision)."""
    return "bf16_mixed" if cfg.optim.bf16 else "fp32"


def bridge_overrides(cfg, iters: Optional[int] = None) -> List[str]:
    """The recipe's settings as Hydra overrides on Bridge's ConfigContainer (without Bridge).

    optim.bf16 is not among them: it selects a MixedPrecisionConfig object (see `precision`).
    """
    iters = train_iters(cfg) if iters is None else iters
    folder = RunFolder.of(cfg)
    m, t, o = cfg.model, cfg.trainer, cfg.optim
    out = [
        f"model.tensor_model_parallel_size={m.tensor_parallel}",
        f"model.pipeline_model_parallel_size={m.pipeline_parallel}",
        f"model.virtual_pipeline_model_parallel_size={'null' if m.virtual_pipeline_parallel is None else m.virtual_pipeline_parallel}",
        f"model.context_parallel_size={m.context_parallel}",
        f"model.sequence_parallel={str(m.sequence_parallel).lower()}",
        f"model.seq_length={m.seq_length}",
        f"dataset.seq_length={m.seq_length}",
        # The objective's loss function returns (loss sum, kept-token count). model.loss_reduction:
        # global - Megatron adds sums and counts over micro-batches and data-parallel ranks and
        #   divides once (calculate_per_token_loss; its DDP then sums gradients, and asserts so);
        # micro_batch - Megatron's schedule divides each micro-batch's sum by its own count and by
        #   the number of micro-batches, and DDP scales gradients by 1 / data-parallel size.
        f"model.calculate_per_token_loss={str(m.loss_reduction != 'micro_batch').lower()}",
        "ddp.average_in_collective=false",
        "model.cross_entropy_loss_fusion=false",
        f"train.global_batch_size={t.global_batch_size}",
        f"train.micro_batch_size={t.micro_batch_size}",
        f"rng.seed={t.seed}",
        f"optimizer.lr={o.lr}",
        f"optimizer.min_lr={o.min_lr}",
        f"optimizer.adam_beta1={o.betas[0]}",
        f"optimizer.adam_beta2={o.betas[1]}",
        f"optimizer.weight_decay={o.weight_decay}",
        # Megatron's scheduler sets the weight decay every step from these two, not from the optimizer's.
        f"scheduler.start_weight_decay={o.weight_decay}",
        f"scheduler.end_weight_decay={o.weight_decay}",
        "scheduler.weight_decay_incr_style=constant",
        f"optimizer.clip_grad={o.grad_clip}",
        f"scheduler.lr_decay_style={o.schedule}",  # the recipe's names are Megatron's
        f"checkpoint.pretrained_checkpoint={pretrained_checkpoint(cfg)}",
        f"checkpoint.save={folder.checkpoints}",
        f"checkpoint.load={folder.checkpoints}",
        f"checkpoint.save_interval={t.save_interval}",
        f"logger.log_interval={t.log_interval}",
        f"logger.tensorboard_dir={folder.tensorboard}",
    ]
    if iters is not None:
        out += [
            f"train.train_iters={iters}",
            f"scheduler.lr_decay_iters={iters}",
            f"scheduler.lr_warmup_iters={int(o.warmup_ratio * iters)}",
        ]
    if t.eval_interval:
        out.append(f"validation.eval_interval={t.eval_interval}")
    else:  # no validation at all: neither during training nor the pass after it
        out += ["validation.eval_interval=null", "validation.eval_iters=0"]
    return out + list(cfg.bridge.overrides)


def _import_bridge():
    return importlib.import_module("megatron.bridge")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def describe_parts(cfg) -> Iterator[str]:
    """The Bridge side of a dry run, in parts: the overrides first (no Bridge needed), then Bridge's
    validated ConfigContainer as plain YAML where Megatron-Bridge imports."""
    iters = train_iters(cfg)
    lines = [f"# Megatron-Bridge: base recipe {cfg.bridge.recipe}, backbone {cfg.model.hf_path}"]
    if iters is None:
        lines.append(f"# train_iters: from the row count of data.train ({cfg.data.train}) at launch")
    lines.append(f"# mixed precision: {precision(cfg)} (optim.bf16={str(cfg.optim.bf16).lower()})")
    lines += [f"#   {o}" for o in bridge_overrides(cfg, iters)]
    try:
        _import_bridge()
    except Exception as err:  # ImportError, or e.g. OSError from a half-installed Transformer Engine
        lines.append(f"# megatron.bridge is not importable here ({_one_line(err)}); the container has it")
        yield "\n".join(lines) + "\n"
        return
    yield "\n".join(lines) + "\n"
    container = build_config(cfg, write_dataset_links=False, iters=iters or NOMINAL_TRAIN_ITERS, check=False)
    checked = validate_config(container, cfg)
    yield "# Megatron-Bridge ConfigContainer (passed ConfigContainer.validate()):\n" + config_yaml(checked, iters is None)


def _plain(value):
    """A YAML-safe copy: paths, dtypes, enums and other objects become strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):  # IntEnum members are ints, but not to YAML
        return value.name
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def config_yaml(container, schedule_at_launch: bool = False) -> str:
    """Bridge's ConfigContainer as plain YAML; the schedule's lengths as AT_LAUNCH if asked."""
    import yaml
    from megatron.bridge.training.utils.omegaconf_utils import create_omegaconf_dict_config
    from omegaconf import OmegaConf

    resolved, _ = create_omegaconf_dict_config(container)
    data = _plain(OmegaConf.to_container(resolved, resolve=True))
    if schedule_at_launch:
        for section, keys in SCHEDULE_FIELDS.items():
            for key in keys:
                if data.get(section, {}).get(key) is not None:
                    data[section][key] = AT_LAUNCH
    return yaml.safe_dump(data, sort_keys=False)


def _recipe_function(dotted: Optional[str], trusted: bool = False):
    """The recipe's base recipe function; one outside Megatron-Bridge's own recipes only when trusted
    (checked again here, before the import, for callers that skip the recipe's validation)."""
    if not dotted:
        raise ConfigError("bridge.recipe is required with engine=bridge (a Megatron-Bridge recipe function)")
    problem = recipe_code_problem(dotted, trusted)
    if problem:
        raise ConfigError(problem)
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception as err:  # noqa: BLE001 - any failure to import is the recipe's error
        raise ConfigError(f"bridge.recipe {dotted!r} cannot be loaded: {_one_line(err)}") from None


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
    seq_length, seed, root = cfg.model.seq_length, cfg.trainer.seed, str(root)
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


def backbone_source(hf_path: str) -> str:
    """A local folder holding the backbone's config.json: model.hf_path itself when it is a folder,
    else the hub id's snapshot in the Hugging Face cache, fetched (config.json only) if it is not
    cached and the hub may be reached (HF_HUB_OFFLINE unset). Failing that, a one-line ConfigError."""
    local = Path(hf_path).expanduser()
    if local.exists() or hf_path.startswith(("/", ".", "~")):
        if not (local / "config.json").is_file():
            raise ConfigError(f"model.hf_path {hf_path!r}: no config.json in that folder")
        return str(local)
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    hint = (f"fetch it once where the hub is reachable (`hf download {hf_path} config.json`, for gated "
            f"models with HF_TOKEN set), or point at a local copy: model.hf_path=/path/to/folder "
            f"(a folder with its config.json)")
    try:
        cached = try_to_load_from_cache(hf_path, "config.json")
    except Exception as err:  # noqa: BLE001 - e.g. a malformed id
        raise ConfigError(f"model.hf_path {hf_path!r} is neither a folder nor a hub id ({_one_line(err)})") from None
    if isinstance(cached, str):
        return str(Path(cached).parent)
    if constants.HF_HUB_OFFLINE:
        raise ConfigError(f"model.hf_path {hf_path!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                          f"and HF_HUB_OFFLINE is set: {hint}")
    try:
        return str(Path(hf_hub_download(hf_path, "config.json")).parent)
    except Exception as err:  # noqa: BLE001 - an unreachable hub, a missing or gated id
        raise ConfigError(f"model.hf_path {hf_path!r}: cannot fetch its config.json from the Hugging Face hub "
                          f"({_one_line(err)}); {hint}") from None


@contextmanager
def backbone_for_every_request(auto_bridge_cls, backbone) -> Iterator[list]:
    """While active, `auto_bridge_cls.from_hf_pretrained(any id)` returns `backbone` (and records the
    id asked for): a base recipe function then applies its settings to a provider of our backbone,
    and never resolves its own backbone id."""
    own = vars(auto_bridge_cls).get("from_hf_pretrained")
    asked: list = []

    def from_hf_pretrained(cls, path, *args, **kwargs):
        asked.append(str(path))
        return backbone

    auto_bridge_cls.from_hf_pretrained = classmethod(from_hf_pretrained)
    try:
        yield asked
    finally:
        if own is None:
            del auto_bridge_cls.from_hf_pretrained
        else:
            auto_bridge_cls.from_hf_pretrained = own


def base_recipe_on_backbone(recipe, auto_bridge_cls, backbone, name: str = "the base recipe"):
    """Call the base recipe function with every AutoBridge request answered by `backbone`: its run
    settings (Transformer Engine, recompute, fusions, parallel defaults) land on our architecture."""
    with backbone_for_every_request(auto_bridge_cls, backbone) as asked:
        container = recipe()
    if not asked:
        raise ConfigError(f"bridge.recipe {name} does not build its model with AutoBridge.from_hf_pretrained, "
                          f"so it cannot be pointed at model.hf_path")
    return container


def build_config(cfg, *, write_dataset_links: bool = True, iters: Optional[int] = None, check: bool = True):
    """Bridge's ConfigContainer for the recipe (needs Megatron-Bridge).

    The base recipe function runs on the recipe's backbone (see `base_recipe_on_backbone`), then the
    recipe's settings are applied as Hydra overrides and optim.bf16 as Bridge's mixed precision. With
    `check`, a copy is passed through Bridge's own ConfigContainer.validate() (`validate_config`).
    """
    from megatron.bridge import AutoBridge
    from megatron.bridge.training.utils.omegaconf_utils import process_config_with_overrides

    source = backbone_source(cfg.model.hf_path)
    try:
        backbone = AutoBridge.from_hf_pretrained(source)
    except Exception as err:  # noqa: BLE001 - an unsupported architecture, an unreadable config
        raise ConfigError(f"model.hf_path {cfg.model.hf_path!r}: Megatron-Bridge cannot use it ({_one_line(err)})") from None
    container = base_recipe_on_backbone(_recipe_function(cfg.bridge.recipe, cfg.bridge.trust_recipe_code),
                                        AutoBridge, backbone, cfg.bridge.recipe)
    container.tokenizer.tokenizer_model = cfg.model.hf_path
    root = RunFolder.of(cfg).dataset
    if write_dataset_links:
        _link_dataset(cfg, root)
    container.dataset = _dataset_config(cfg, root)
    container.mixed_precision = _mixed_precision(cfg)
    try:
        container = process_config_with_overrides(container, cli_overrides=bridge_overrides(cfg, iters))
    except Exception as err:  # noqa: BLE001 - a bad key or value in bridge.overrides
        raise ConfigError(f"Megatron-Bridge rejects an override ({_one_line(err)})") from None
    if check:
        validate_config(container, cfg)
    return container


def _mixed_precision(cfg):
    """optim.bf16: Bridge's bf16_mixed recipe, or full fp32 (the provider's bf16 from the HF dtype undone)."""
    import torch
    from megatron.bridge.training.mixed_precision import MixedPrecisionConfig, get_mixed_precision_config

    if cfg.optim.bf16:
        return get_mixed_precision_config("bf16_mixed")
    return MixedPrecisionConfig(fp32=True, bf16=False, fp16=False, params_dtype=torch.float32,
                                pipeline_dtype=torch.float32, autocast_enabled=False, grad_reduce_in_fp32=True)


def validate_config(container, cfg):
    """A copy of `container` passed through Bridge's ConfigContainer.validate(), as Bridge's own
    runtime_config_update does before training (mixed precision applied first), for the recipe's
    world size (launch.nnodes x launch.nproc_per_node). Returns the validated copy; a rejection is a
    one-line ConfigError. A pretrained checkpoint that does not exist yet is left out of the check
    (`import` makes it; the launch checks it)."""
    from megatron.bridge.training.mixed_precision import get_mixed_precision_config

    checked = copy.deepcopy(container)
    pretrained = checked.checkpoint.pretrained_checkpoint
    if pretrained is not None and not Path(pretrained).exists():
        checked.checkpoint.pretrained_checkpoint = None
    if isinstance(checked.mixed_precision, str):
        checked.mixed_precision = get_mixed_precision_config(checked.mixed_precision)
    m = checked.model
    world = cfg.launch.nnodes * cfg.launch.nproc_per_node
    model_parallel = m.tensor_model_parallel_size * m.pipeline_model_parallel_size * m.context_parallel_size
    if world % model_parallel:
        raise ConfigError(f"launch: {cfg.launch.nnodes} x {cfg.launch.nproc_per_node} GPUs is not a multiple of "
                          f"TP x PP x CP = {model_parallel}")
    try:
        if checked.mixed_precision is not None:
            checked.mixed_precision.finalize()
            checked.mixed_precision.setup(checked.model, checked.optimizer, checked.ddp)
        checked.data_parallel_size = world // model_parallel
        if checked.comm_overlap is not None:
            checked.comm_overlap.data_parallel_size = checked.data_parallel_size
        checked.validate()
    except (AssertionError, ValueError, TypeError) as err:
        raise ConfigError(f"Megatron-Bridge's ConfigContainer.validate() rejects the config: {_one_line(err)}") from None
    checked.checkpoint.pretrained_checkpoint = pretrained
    return checked


def import_checkpoint(cfg) -> Path:
    """Convert the recipe's Hugging Face backbone to a Megatron checkpoint once (run on one process)."""
    from megatron.bridge import AutoBridge

    target = pretrained_checkpoint(cfg)
    if target.exists():
        return target
    AutoBridge.import_ckpt(cfg.model.hf_path, str(target))
    return target


def run_sft(cfg) -> int:
    """Fine-tune with Bridge's `finetune` and the recipe's objective; call under torchrun.

    Every rank first checks the recipe's parallel sizes against the processes torchrun started (a
    hand-written torchrun command may start others than launch.nnodes x launch.nproc_per_node).
    Global rank 0 holds the run folder's lock (run_folder.held: a second run there fails at once) and
    records the config as the CPU engine does (run_folder.record_config: the temporary files of killed
    runs swept, a rerun's changes kept in config_history.jsonl, changes to the keys a checkpoint
    depends on refused).
    """
    check_started_world(cfg)
    folder = RunFolder.of(cfg)
    with held(folder.root) as lock_fd:
        if not pretrained_checkpoint(cfg).exists():
            raise ConfigError(
                f"no Megatron checkpoint at {pretrained_checkpoint(cfg)}: "
                f"run `nemo-beyond-nll import --config <recipe>` once first"
            )
        if train_iters(cfg) is None:
            raise ConfigError(f"data.train {cfg.data.train!r} not found: cannot size the schedule")
        if lock_fd >= 0:
            record_config(cfg, "train")
        from megatron.bridge.training.finetune import finetune

        from .dataset_helpers import use_prebuilt_dataset_helpers
        from ...megatron.step import ObjectiveForwardStep

        if is_auto(cfg):  # chosen once from the backbone's p on the first training rows, then kept
            from .probe import auto_objective

            objective = auto_objective(cfg, folder)
        else:
            objective = objective_from_config(cfg)
        step = ObjectiveForwardStep(objective, cfg.trainer.hist_interval, cfg.model.loss_fusion, cfg.model.check_finite)
        use_prebuilt_dataset_helpers()
        finetune(build_config(cfg), step)
    return 0
