"""The recipe schema: every key a recipe YAML may hold, its type and its default.

A recipe is validated against this schema when it is loaded, so an unknown key or a value of the
wrong type is an error that names it, before any process starts. Defaults follow the paper's SFT
setup (global batch 256, cosine schedule with 10% warmup, AdamW (0.9, 0.95), weight decay 0.01,
grad clip 1.0, bf16, 1 epoch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import (AUTO, ConfigError, apply_overrides, check_auto, check_world_size, is_auto, load_config,
                     objective_from_config, recipe_code_problem)
from .data.pipeline import SplitFileError, check_split_file
from .data.synthetic import task_names

ENGINES = ("bridge", "cpu")
# How a step's summed loss becomes the loss it differentiates (model.loss_reduction):
#   global      - the sum over the global batch / its kept-token count (every kept token weighs the same)
#   micro_batch - each micro-batch's sum / its own kept count, averaged over micro-batches and
#                 data-parallel ranks (the reduction of the paper's trainer)
LOSS_REDUCTIONS = ("global", "micro_batch")
TRUNCATIONS = ("right",)
EVAL_MODELS = ("checkpoint", "base")  # what `eval` evaluates: the run's fine-tuned model, or the untrained backbone


@dataclass
class TinyModel:
    """The CPU engine's Megatron-Core GPT (the vocabulary comes from the character tokenizer): passed
    whole to engines.cpu.models.TinyGPTConfig, so every field is one of its fields, by name."""

    hidden_size: int = 64
    num_layers: int = 2
    num_attention_heads: int = 4
    ffn_hidden_size: int = 256


@dataclass
class ModelSection:
    loss: str = "nll"  # any objective name (see nemo_beyond_nll.core.objectives), or auto
    auto_batches: int = 8  # model.loss=auto: training batches the start-up probe reads
    loss_args: Dict[str, Any] = field(default_factory=dict)
    loss_fusion: Optional[str] = None  # "linear": fuse the output layer into the loss (no logits tensor)
    check_finite: bool = False  # raise naming the first row of NaN/inf logits (one host sync a step; not with loss_fusion)
    hf_path: Optional[str] = None  # Hugging Face id or folder of the backbone (bridge engine)
    pretrained_checkpoint: Optional[str] = None  # Megatron checkpoint imported from hf_path
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    virtual_pipeline_parallel: Optional[int] = None
    context_parallel: int = 1
    sequence_parallel: bool = False
    seq_length: int = 3072
    loss_reduction: str = "global"  # global | micro_batch (see LOSS_REDUCTIONS)
    tiny: TinyModel = field(default_factory=TinyModel)


@dataclass
class DataSection:
    train: Optional[str] = None  # JSONL of {"prompt", "completion"}; synthetic data needs none
    validation: Optional[str] = None
    task: str = "sort"  # synthetic task (cpu engine); "a+b" mixes tasks
    noise: float = 0.0  # fraction of synthetic training completions replaced by random letters
    num_train: int = 4096
    num_validation: int = 256
    seed: int = 0
    drop_last: bool = False  # true: floor(rows / batch) optimizer steps, the partial last batch unused
    # null: a row longer than seq_length is an error (the builders' --max-length drops such rows);
    # right: it is cut at its end (the CPU engine when packing; for the GPU engine build the data
    # with `data DOMAIN --protocol paper --max-length N`, which cuts long rows at their end, since
    # Bridge's own truncation would cut the prompt first)
    truncate: Optional[str] = None


@dataclass
class TrainerSection:
    max_steps: Optional[int] = None  # None: `epochs` passes over the training data
    epochs: float = 1.0
    global_batch_size: int = 256
    micro_batch_size: int = 1
    seed: int = 1234
    log_interval: int = 1
    eval_interval: int = 0  # 0: no validation during training
    save_interval: int = 100
    hist_interval: int = 50  # steps between target-probability histograms (0: start and end only)


@dataclass
class OptimSection:
    lr: float = 5e-5
    min_lr: float = 0.0
    warmup_ratio: float = 0.1
    schedule: str = "cosine"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    bf16: bool = True


@dataclass
class CheckpointSection:
    dir: str = "runs/${name}"


@dataclass
class LaunchSection:
    nnodes: int = 1
    nproc_per_node: int = 8


@dataclass
class BridgeSection:
    recipe: Optional[str] = None  # dotted path of a Megatron-Bridge recipe function giving the base config
    # A recipe function outside megatron.bridge.recipes is code the recipe runs (its module's import and
    # the call): refused unless this is true (see docs/security.md)
    trust_recipe_code: bool = False
    overrides: List[str] = field(default_factory=list)  # Hydra overrides applied to Bridge's ConfigContainer


@dataclass
class BenchmarkSampling:
    """One benchmark's changes to the eval section's sampling settings; a key left null keeps the section's."""

    num_generations: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_new_tokens: Optional[int] = None


@dataclass
class EvalSection:
    benchmarks: List[str] = field(default_factory=list)
    # How every benchmark is decoded (see nemo_beyond_nll.eval.sampling): greedy, one output per problem by default.
    max_new_tokens: int = 3072
    num_generations: int = 1  # k outputs per problem; summary.json gains mean@k and pass@k
    temperature: float = 0.0  # 0: greedy; k > 1 needs > 0
    top_p: float = 1.0
    per_benchmark: Dict[str, BenchmarkSampling] = field(default_factory=dict)  # benchmark -> its own settings
    num_samples: Optional[int] = None  # None: the whole benchmark
    # checkpoint: the run's fine-tuned model; base: the untrained backbone (model.hf_path), the
    # "base" rows of the paper's tables (engine=bridge)
    model: str = "checkpoint"
    # Local benchmark copies (see nemo_beyond_nll.eval.benchmark_sets); a benchmark without one comes from the hub.
    benchmark_dir: Optional[str] = None  # holds <benchmark>.jsonl (.json, .parquet) or a folder <benchmark>/
    benchmark_files: Dict[str, str] = field(default_factory=dict)  # benchmark -> file or folder; wins over benchmark_dir


@dataclass
class ContinuumEnd:
    task: str = "sort"
    noise: float = 0.0
    steps: int = 150


@dataclass
class SweepSection:
    """The crossover sweep: one task, base models pre-trained for each of `pretrain_steps` steps."""

    task: str = "sort"
    noise: float = 0.2
    steps: int = 150
    pretrain_steps: List[int] = field(default_factory=list)  # one point each; empty: the two-end experiment


@dataclass
class ContinuumSection:
    """The CPU continuum experiment: pre-train a base model, then fine-tune copies at both ends."""

    pretrain_task: str = "copy+sort+shift"
    pretrain_steps: int = 800
    pretrain_lr: float = 3.0e-3  # fine-tuning uses optim.lr
    strong: ContinuumEnd = field(default_factory=lambda: ContinuumEnd("sort", 0.4, 150))
    weak: ContinuumEnd = field(default_factory=lambda: ContinuumEnd("reverse", 0.0, 150))
    objectives: List[str] = field(default_factory=lambda: ["nll", "neg_p", "GeneralFamily-10", "OnlyTopP-0.1"])
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    sweep: SweepSection = field(default_factory=SweepSection)


@dataclass
class Recipe:
    name: str = "run"
    engine: str = "bridge"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    optim: OptimSection = field(default_factory=OptimSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    launch: LaunchSection = field(default_factory=LaunchSection)
    bridge: BridgeSection = field(default_factory=BridgeSection)
    eval: EvalSection = field(default_factory=EvalSection)
    continuum: ContinuumSection = field(default_factory=ContinuumSection)


def _one_line(err: OmegaConfBaseException) -> str:
    message = str(err).splitlines()[0]
    key = getattr(err, "full_key", None)
    return f"{key}: {message}" if key and key not in message else message


def load_recipe(path: Union[str, Path], overrides=()) -> DictConfig:
    """Load a recipe YAML onto the schema, apply overrides, validate; a ConfigError names what is wrong."""
    schema = OmegaConf.structured(Recipe)
    try:
        cfg = OmegaConf.merge(schema, load_config(path))
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path}: {_one_line(err)}") from None
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def _check(ok: bool, key: str, rule: str, value) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def _at_least(cfg: DictConfig, keys, low, optional: bool = False) -> None:
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is None and optional:
            continue
        _check(value is not None and value >= low, key, f">= {low}", value)


def _fraction(cfg: DictConfig, keys, below_one: bool = False) -> None:
    for key in keys:
        value = OmegaConf.select(cfg, key)
        _check(0.0 <= value < 1.0 if below_one else 0.0 <= value <= 1.0, key,
               "in [0, 1)" if below_one else "in [0, 1]", value)


def world_size(cfg: DictConfig) -> int:
    """Processes a run uses: one per tensor-parallel rank on the cpu engine, nodes x GPUs on bridge."""
    return cfg.model.tensor_parallel if cfg.engine == "cpu" else cfg.launch.nnodes * cfg.launch.nproc_per_node


def validate(cfg: DictConfig) -> None:
    """Checks that the schema's types cannot express: names, ranges, and sizes that must divide.
    Each step raises a ConfigError naming the first key it finds wrong."""
    if cfg.engine not in ENGINES:
        raise ConfigError(f"engine must be one of {ENGINES}, got {cfg.engine!r}")
    _check_objective(cfg)
    _check_ranges(cfg)
    _check_optimizer(cfg)
    _check_model(cfg)
    _check_eval_model(cfg)
    _check_tasks(cfg)
    _check_continuum(cfg)
    _check_parallel_sizes(cfg)
    _check_engine_needs(cfg)
    _check_recipe_code(cfg)
    _validate_sampling(cfg)
    _validate_reduction(cfg)


def _check_objective(cfg: DictConfig) -> None:
    """model.loss and model.loss_args name an objective (or auto, with its own keys)."""
    if is_auto(cfg):
        check_auto(cfg)
    else:
        objective_from_config(cfg)  # raises ConfigError naming a bad model.loss / model.loss_args


def _check_ranges(cfg: DictConfig) -> None:
    """Every number in its range: sizes, steps and intervals, seeds, fractions, rates."""
    _at_least(cfg, ("model.tensor_parallel", "model.auto_batches", "model.pipeline_parallel", "model.context_parallel",
                    "model.tiny.hidden_size", "model.tiny.num_layers", "model.tiny.num_attention_heads",
                    "model.tiny.ffn_hidden_size", "data.num_train", "data.num_validation",
                    "trainer.global_batch_size", "trainer.micro_batch_size", "trainer.log_interval",
                    "trainer.save_interval", "launch.nnodes", "launch.nproc_per_node", "eval.max_new_tokens",
                    "continuum.pretrain_steps", "continuum.strong.steps", "continuum.weak.steps"), 1)
    _at_least(cfg, ("model.virtual_pipeline_parallel", "trainer.max_steps", "eval.num_samples"), 1, optional=True)
    _at_least(cfg, ("model.seq_length",), 2)
    _at_least(cfg, ("data.seed", "trainer.seed", "trainer.eval_interval", "trainer.hist_interval",
                    "optim.min_lr", "optim.weight_decay", "optim.grad_clip"), 0)
    _fraction(cfg, ("data.noise", "continuum.strong.noise", "continuum.weak.noise", "continuum.sweep.noise"))
    _fraction(cfg, ("optim.warmup_ratio",), below_one=True)
    t, o = cfg.trainer, cfg.optim
    _check(t.epochs > 0, "trainer.epochs", "> 0", t.epochs)
    _check(o.lr > 0, "optim.lr", "> 0", o.lr)
    _check(o.min_lr <= o.lr, "optim.min_lr", f"<= optim.lr ({o.lr})", o.min_lr)
    _check(cfg.continuum.pretrain_lr > 0, "continuum.pretrain_lr", "> 0", cfg.continuum.pretrain_lr)


def _check_optimizer(cfg: DictConfig) -> None:
    """A known learning-rate schedule, and two betas in [0, 1)."""
    o = cfg.optim
    if o.schedule not in ("cosine", "linear", "constant"):
        raise ConfigError(f"optim.schedule must be cosine, linear or constant, got {o.schedule!r}")
    if len(o.betas) != 2:
        raise ConfigError(f"optim.betas must hold two numbers, got {list(o.betas)}")
    _check(all(0.0 <= b < 1.0 for b in o.betas), "optim.betas", "two numbers in [0, 1)", list(o.betas))


def _check_model(cfg: DictConfig) -> None:
    """The loss fusion is known and compatible with check_finite; the tiny model's heads divide its width."""
    m = cfg.model
    if m.loss_fusion not in (None, "linear"):
        raise ConfigError(f"model.loss_fusion must be null or linear, got {m.loss_fusion!r}")
    if m.check_finite and m.loss_fusion:
        raise ConfigError("model.check_finite needs the logits: it cannot be set with model.loss_fusion=linear")
    _check(m.tiny.hidden_size % m.tiny.num_attention_heads == 0, "model.tiny.hidden_size",
           f"a multiple of model.tiny.num_attention_heads ({m.tiny.num_attention_heads})", m.tiny.hidden_size)


def _check_eval_model(cfg: DictConfig) -> None:
    """eval.model is known; the untrained backbone is a Hugging Face model, evaluated on bridge."""
    if cfg.eval.model not in EVAL_MODELS:
        raise ConfigError(f"eval.model must be one of {', '.join(EVAL_MODELS)}, got {cfg.eval.model!r}")
    if cfg.eval.model == "base" and cfg.engine != "bridge":
        raise ConfigError("eval.model=base evaluates a Hugging Face backbone (model.hf_path): it needs engine=bridge")


def _check_tasks(cfg: DictConfig) -> None:
    """Every synthetic task name (data and the continuum experiment's) is known."""
    for key in ("data.task", "continuum.pretrain_task", "continuum.strong.task", "continuum.weak.task",
                "continuum.sweep.task"):
        try:
            task_names(OmegaConf.select(cfg, key))
        except ValueError as err:
            raise ConfigError(f"{key}: {err}") from None


def _check_continuum(cfg: DictConfig) -> None:
    """The continuum experiment's seeds, sweep points and objectives."""
    _check(len(cfg.continuum.seeds) > 0, "continuum.seeds", "a non-empty list", list(cfg.continuum.seeds))
    sweep = cfg.continuum.sweep
    _check(sweep.steps >= 1, "continuum.sweep.steps", ">= 1", sweep.steps)
    _check(all(k >= 0 for k in sweep.pretrain_steps) and len(set(sweep.pretrain_steps)) == len(sweep.pretrain_steps),
           "continuum.sweep.pretrain_steps", "distinct step counts >= 0", list(sweep.pretrain_steps))
    for name in cfg.continuum.objectives:
        try:
            if name != AUTO:
                objective_from_config({"model": {"loss": name}})
        except ConfigError as err:
            raise ConfigError(f"continuum.objectives: {str(err).removeprefix('model.loss: ')}") from None


def _check_parallel_sizes(cfg: DictConfig) -> None:
    """The model-parallel group divides the processes (known for GPU recipes: nodes x GPUs per node;
    the cpu engine starts one per tensor-parallel rank, and runs tensor parallelism only), and the
    global batch the micro batches of every data-parallel rank."""
    m = cfg.model
    if cfg.engine == "cpu":
        for key in ("pipeline_parallel", "context_parallel"):
            if m[key] != 1:
                raise ConfigError(f"the cpu engine runs tensor parallelism only: model.{key} must be 1")
    check_world_size(cfg, world_size(cfg), "GPUs of launch.nnodes x launch.nproc_per_node")


def _check_engine_needs(cfg: DictConfig) -> None:
    """What each engine needs: a backbone on bridge; on the cpu engine, tiny-model sizes that split
    over the tensor-parallel ranks, and held-out prompts beside training data from files."""
    m = cfg.model
    if cfg.engine == "bridge" and not m.hf_path:
        raise ConfigError("model.hf_path is required with engine=bridge (the backbone to fine-tune)")
    if cfg.engine == "cpu":
        for key in ("num_attention_heads", "ffn_hidden_size"):
            _check(m.tiny[key] % m.tensor_parallel == 0, f"model.tiny.{key}",
                   f"a multiple of model.tensor_parallel ({m.tensor_parallel})", m.tiny[key])
        if cfg.data.train is not None and not cfg.data.validation:
            raise ConfigError("data.validation is required with data.train on the cpu engine (the held-out prompts)")


def _check_recipe_code(cfg: DictConfig) -> None:
    """bridge.recipe names Megatron-Bridge's own recipe function, unless the recipe opts in."""
    problem = recipe_code_problem(cfg.bridge.recipe, cfg.bridge.trust_recipe_code)
    if problem:
        raise ConfigError(problem)


def _validate_reduction(cfg: DictConfig) -> None:
    """model.loss_reduction and data.truncate name known choices; micro_batch is exact without context parallelism."""
    if cfg.model.loss_reduction not in LOSS_REDUCTIONS:
        raise ConfigError(f"model.loss_reduction must be one of {', '.join(LOSS_REDUCTIONS)}, "
                          f"got {cfg.model.loss_reduction!r}")
    if cfg.data.truncate is not None and cfg.data.truncate not in TRUNCATIONS:
        raise ConfigError(f"data.truncate must be null or one of {', '.join(TRUNCATIONS)}, got {cfg.data.truncate!r}")
    if cfg.model.loss_reduction == "micro_batch" and cfg.model.context_parallel != 1:
        raise ConfigError("model.loss_reduction=micro_batch needs model.context_parallel=1: each context-parallel "
                          "rank would divide by its own share of the kept tokens")


def _validate_sampling(cfg: DictConfig) -> None:
    """eval's sampling settings, and each benchmark's in eval.per_benchmark, lie in range; the CPU
    engine's decoding is greedy with one output per problem."""
    settings = {}
    for key in ("num_generations", "temperature", "top_p", "max_new_tokens"):
        settings[key] = cfg.eval[key]
    checks = [("eval.", settings)]
    for name, override in (cfg.eval.per_benchmark or {}).items():
        merged = dict(settings)
        merged.update({key: value for key, value in override.items() if value is not None})
        checks.append((f"eval.per_benchmark.{name}.", merged))
    for where, values in checks:
        if values["num_generations"] < 1:
            raise ConfigError(f"{where}num_generations must be >= 1, got {values['num_generations']}")
        if values["temperature"] < 0:
            raise ConfigError(f"{where}temperature must be >= 0, got {values['temperature']}")
        if not 0 < values["top_p"] <= 1:
            raise ConfigError(f"{where}top_p must lie in (0, 1], got {values['top_p']}")
        if values["max_new_tokens"] < 1:
            raise ConfigError(f"{where}max_new_tokens must be >= 1, got {values['max_new_tokens']}")
        if values["num_generations"] > 1 and values["temperature"] == 0:
            raise ConfigError(f"{where}num_generations={values['num_generations']} needs temperature > 0: "
                              "greedy generations are all the same")
        if cfg.engine == "cpu" and (values["num_generations"] > 1 or values["temperature"] > 0):
            raise ConfigError(f"the cpu engine decodes greedily, one output per problem: "
                              f"{where}num_generations and temperature must stay 1 and 0")


# The commands that read the recipe's data files, and which of them each engine reads.
_DATA_KEYS = {
    ("cpu", "sft"): ("data.train", "data.validation"), ("cpu", "eval"): ("data.train", "data.validation"),
    ("cpu", "probe"): ("data.train", "data.validation"), ("cpu", "continuum"): ("data.train", "data.validation"),
    ("bridge", "sft"): ("data.train", "data.validation"), ("bridge", "probe"): ("data.train",),
}
# Commands that read model.hf_path on the machine they run on (engine=bridge).
_BACKBONE_COMMANDS = ("import", "sft", "probe")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def backbone_problem(hf_path: Optional[str]) -> Optional[str]:
    """Why model.hf_path cannot be read here, or None: a local folder (a path that is not of the form
    owner/name, or one that exists) must exist and hold the model's config.json; a hub id is not checked."""
    if not hf_path:
        return None
    path = Path(hf_path).expanduser()
    if not path.exists() and _HUB_ID.fullmatch(str(hf_path)):
        return None  # a hub id, fetched (or found in the cache) when the command runs
    if not path.is_dir():
        return f"model.hf_path: no such folder: {hf_path} (a local backbone folder, or a hub id like owner/name)"
    if not (path / "config.json").is_file():
        return f"model.hf_path: {hf_path} holds no config.json (not a Hugging Face model folder)"
    return None


def input_problems(cfg: DictConfig, command: str) -> List[str]:
    """What is wrong with the files `command` would read (the data splits, a local backbone folder),
    one line each; empty when every input is readable. Data files are checked line by line, with the
    cpu engine's tokenizer on the cpu engine."""
    problems = []
    encode = None
    if cfg.engine == "cpu":
        from .data.char_tokenizer import CharTokenizer

        encode = CharTokenizer().encode
    for key in _DATA_KEYS.get((cfg.engine, command), ()):
        path = OmegaConf.select(cfg, key)
        if path is None:
            continue
        try:
            check_split_file(path, encode)
        except SplitFileError as err:
            problems.append(f"{key}: {err}")
    if cfg.engine == "bridge" and command in _BACKBONE_COMMANDS:
        problem = backbone_problem(cfg.model.hf_path)
        if problem:
            problems.append(problem)
    return problems


def resolved_yaml(cfg: DictConfig) -> str:
    """The fully resolved recipe as YAML, with the objective it resolves to."""
    objective = ("auto: chosen at start-up by the probe's rule, from the base model's p on the first "
                 f"{cfg.model.auto_batches} training batches" if is_auto(cfg) else objective_from_config(cfg))
    text = OmegaConf.to_yaml(cfg, resolve=True)
    return f"{text}# objective: {objective}\n"
