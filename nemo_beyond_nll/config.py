"""YAML configs with Hydra-grammar overrides, and the objective a config selects.

A recipe picks its objective with two keys:

    model:
      loss: neg_p_threshold        # any name get_objective accepts; missing means nll
      loss_args: {threshold: 0.1}  # that objective's arguments

and the command line changes them with Hydra's override grammar:
`model.loss=neg_p_threshold model.loss_args.threshold=0.1`, `~old.key`. On a config with a schema
(a recipe) new keys may only be made inside its free-form mappings (`model.loss_args`,
`eval.benchmark_files`), with or without `+`; on a plain YAML file `+new.key=1` adds one.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Iterable, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .core.objectives import Objective, get_objective

# Mappings whose keys are not known in advance: an override may create a key inside them. With a
# schema, these are its Dict fields (see _free_form_keys).
FREE_FORM_KEYS = ("model.loss_args",)
_ABSENT = object()


class ConfigError(ValueError):
    """A bad config file, override or value; the message is one line that names it."""


def load_config(path: Union[str, Path], overrides: Iterable[str] = ()) -> DictConfig:
    """Read a YAML file and apply Hydra-grammar overrides to it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = read_yaml(path.read_text(encoding="utf-8"), path)
    except yaml.YAMLError as err:  # yaml's errors span lines: keep where and what
        raise ConfigError(f"cannot parse {path}{_yaml_where(err)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot parse {path}: not UTF-8 text") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return apply_overrides(OmegaConf.create(data), overrides)


def read_yaml(text: str, path: Union[str, Path] = "<string>"):
    """yaml.safe_load, except that a key given twice in one mapping is a ConfigError naming the key
    and both lines: plain YAML keeps the second silently, which turns a typo'd recipe into another run."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, path, "")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node, path, prefix: str) -> None:
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, path, f"{prefix}[{index}]")
        return
    if not isinstance(node, yaml.MappingNode):
        return
    first_line = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges, it is not a key
            continue
        key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise ConfigError(f"{path}: duplicate key '{key}' at lines {first_line[key]} and {line}; "
                              "keep one")
        first_line[key] = line
        _refuse_duplicate_keys(value_node, path, key)


def _yaml_where(err: yaml.YAMLError) -> str:
    """":line:column: problem" (1-based) from yaml's marks, or ": <first line>" without them."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "context", None)
    if mark is None or not problem:
        return f": {str(err).splitlines()[0]}"
    context = getattr(err, "context", None)
    context = f" ({context})" if context and context != problem else ""
    return f":{mark.line + 1}:{mark.column + 1}: {problem}{context}"


def _free_form_keys(cfg: DictConfig) -> tuple:
    """The mappings of `cfg` whose keys are free: Dict fields of its schema, or FREE_FORM_KEYS."""
    schema = OmegaConf.get_type(cfg)
    if not dataclasses.is_dataclass(schema):
        return FREE_FORM_KEYS
    keys = []

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                walk(type(default), f"{prefix}{f.name}.")
            elif getattr(f.type, "__origin__", None) is dict or str(f.type).startswith(("Dict", "typing.Dict", "dict")):
                keys.append(prefix + f.name)

    walk(schema, "")
    return tuple(keys)


def _has_schema(cfg: DictConfig) -> bool:
    return dataclasses.is_dataclass(OmegaConf.get_type(cfg))


def _exists(cfg: DictConfig, key: str) -> bool:
    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False) is not _ABSENT


def _in_free_form(key: str, free_form=FREE_FORM_KEYS) -> bool:
    return any(key.startswith(prefix + ".") for prefix in free_form)


def _leaf_keys(node: DictConfig, prefix: str = "") -> list:
    keys = []
    for name in node.keys():
        child = node._get_node(name)  # the node itself: no interpolation is resolved
        path = f"{prefix}{name}"
        keys += _leaf_keys(child, path + ".") if isinstance(child, DictConfig) else [path]
    return keys


def _suggestion(cfg: DictConfig, key: str) -> str:
    close = difflib.get_close_matches(key, _leaf_keys(cfg), n=1, cutoff=0.8)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if _has_schema(cfg):  # a schema fixes the keys: no adding
        return f" (not a key of the schema; new keys only under {', '.join(_free_form_keys(cfg))})"
    return f" (use +{key}=... to add a new key)"


def apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Apply `key=value` (change), `+key=value` (add), `++key=value` (force) and `~key` (delete).

    On a config with a schema, a key that does not exist may only be made inside the schema's
    free-form mappings, with or without `+`: anywhere else it is an unknown key, `+` or not."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    overrides = list(overrides)
    free_form = _free_form_keys(cfg)
    schema = _has_schema(cfg)
    parser, parsed = OverridesParser.create(), []
    for text in overrides:  # one by one, to name the one that does not parse
        try:
            parsed += parser.parse_overrides([text])
        except HydraException as err:
            reason = " ".join(str(err).split()).split(" See https://")[0]
            raise ConfigError(f"bad override {text!r}: {reason}") from None
    for override, text in zip(parsed, overrides):
        key = override.key_or_group
        if override.is_sweep_override():
            raise ConfigError(f"override {text!r} is a sweep; give one value")
        exists = _exists(cfg, key)
        if override.is_delete():
            if not exists:
                raise ConfigError(f"cannot delete {key!r}: no such key")
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            del node[leaf]
            continue
        value = override.value()
        if override.is_add() and exists:
            raise ConfigError(f"cannot add {key!r}: it is already set (use ++{key}=... to replace)")
        may_add = _in_free_form(key, free_form) or (not schema and (override.is_add() or override.is_force_add()))
        if not (exists or may_add):
            raise ConfigError(f"unknown config key {key!r}{_suggestion(cfg, key)}")
        try:
            OmegaConf.update(cfg, key, value, merge=True, force_add=True)
        except OmegaConfBaseException as err:
            raise ConfigError(f"bad value for {key!r}: {str(err).splitlines()[0]}") from None
    return cfg


# model.loss=auto: the engine probes the base model on the first training batches at start-up and
# trains with the objective the probe's rule recommends (nemo_beyond_nll.probe.recommend).
AUTO = "auto"


def is_auto(cfg) -> bool:
    """Whether the config leaves the objective to the start-up probe (`model.loss=auto`)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    return OmegaConf.select(cfg, "model.loss", default=None) == AUTO


def check_auto(cfg) -> None:
    """model.loss=auto takes no arguments: the objective it picks brings its own."""
    args = OmegaConf.select(cfg, "model.loss_args", default=None)
    if args:
        raise ConfigError(f"model.loss=auto takes no model.loss_args (the objective it picks brings its own), "
                          f"got {OmegaConf.to_container(args) if OmegaConf.is_config(args) else args!r}")


def objective_from_config(cfg) -> Objective:
    """The objective named by `model.loss` with `model.loss_args`; `nll` when `model.loss` is absent.
    `auto` has none before the engine's start-up probe: a ConfigError says so."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    name = OmegaConf.select(cfg, "model.loss", default=None)
    if name == AUTO:
        raise ConfigError("model.loss=auto is chosen at start-up, from a probe of the base model on the first "
                          "training batches: there is no objective before that")
    args = OmegaConf.select(cfg, "model.loss_args", default=None)
    if OmegaConf.is_config(args):
        args = OmegaConf.to_container(args, resolve=True)
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise ConfigError(f"model.loss_args must be a mapping, got {args!r}")
    try:
        return get_objective("nll" if name is None else name, **args)
    except ValueError as err:
        raise ConfigError(f"model.loss: {err}") from None


def check_world_size(cfg, world: int, processes: str) -> None:
    """The model-parallel group (tensor x pipeline x context parallel) divides `world` processes, and
    the global batch is a multiple of the micro batch times the data-parallel size; `processes` says
    where `world` comes from. The recipe's validation runs it on the launch values, each rank at
    start-up on torchrun's WORLD_SIZE (`check_started_world`)."""
    m, t = cfg.model, cfg.trainer
    model_parallel = m.tensor_parallel * m.pipeline_parallel * m.context_parallel
    if world % model_parallel:
        raise ConfigError(
            f"model.tensor_parallel x pipeline_parallel x context_parallel = {model_parallel} does not divide the "
            f"{world} {processes}")
    data_parallel = world // model_parallel
    if t.global_batch_size % (t.micro_batch_size * data_parallel):
        raise ConfigError(
            f"trainer.global_batch_size={t.global_batch_size} is not a multiple of "
            f"trainer.micro_batch_size={t.micro_batch_size} x data-parallel size {data_parallel}")


def check_started_world(cfg, environ=None) -> None:
    """The world-size checks again on the processes torchrun really started (its WORLD_SIZE, which a
    hand-written torchrun command may set apart from the recipe's launch values); call in every rank
    before any model is built. A mismatch is a ConfigError on each node's LOCAL_RANK 0 and a silent
    exit 2 on the other ranks, so that the one line is printed once per node. Nothing outside torchrun."""
    import os

    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return
    try:
        check_world_size(cfg, int(environ["WORLD_SIZE"]), "processes torchrun started (WORLD_SIZE)")
    except ConfigError:
        if environ.get("LOCAL_RANK", "0") != "0":
            raise SystemExit(2) from None
        raise


# Where Megatron-Bridge keeps its own recipe functions: the only ones a recipe may name without opting in.
BRIDGE_RECIPES = "megatron.bridge.recipes."


def recipe_code_problem(recipe, trusted: bool):
    """Why bridge.recipe may not be imported and called, or None: a function outside Megatron-Bridge's
    own recipes runs code the recipe names (its module's import, the call), so it needs
    bridge.trust_recipe_code=true."""
    if not recipe or trusted or str(recipe).startswith(BRIDGE_RECIPES):
        return None
    return (f"bridge.recipe {recipe!r} is not one of Megatron-Bridge's recipe functions ({BRIDGE_RECIPES}*): "
            f"calling it runs code the recipe names; set bridge.trust_recipe_code=true if you trust it")
