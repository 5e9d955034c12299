"""YAML configs with Hydra-grammar overrides, and the objective a config selects.

A recipe picks its objective with two keys:

    model:
      loss: neg_p_threshold        # any name get_objective accepts; missing means nll
      loss_args: {threshold: 0.1}  # that objective's arguments

and the command line changes them with Hydra's override grammar:
`model.loss=neg_p_threshold model.loss_args.threshold=0.1`, `+new.key=1`, `~old.key`.
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

# Mappings whose keys are not known in advance: an override may create a key inside them.
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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:  # yaml's errors span lines; keep the first
        raise ConfigError(f"cannot parse {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return apply_overrides(OmegaConf.create(data), overrides)


def _exists(cfg: DictConfig, key: str) -> bool:
    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False) is not _ABSENT


def _in_free_form(key: str) -> bool:
    return any(key.startswith(prefix + ".") for prefix in FREE_FORM_KEYS)


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
    if dataclasses.is_dataclass(OmegaConf.get_type(cfg)):  # a schema fixes the keys: no adding
        return " (not a key of the schema)"
    return f" (use +{key}=... to add a new key)"


def apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Apply `key=value` (change), `+key=value` (add), `++key=value` (force) and `~key` (delete)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    overrides = list(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(f"bad override: {str(err).splitlines()[0]}") from None
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
        if not (exists or override.is_add() or override.is_force_add() or _in_free_form(key)):
            raise ConfigError(f"unknown config key {key!r}{_suggestion(cfg, key)}")
        try:
            OmegaConf.update(cfg, key, value, merge=True, force_add=True)
        except OmegaConfBaseException as err:
            raise ConfigError(f"bad value for {key!r}: {str(err).splitlines()[0]}") from None
    return cfg


def objective_from_config(cfg) -> Objective:
    """The objective named by `model.loss` with `model.loss_args`; `nll` when `model.loss` is absent."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    name = OmegaConf.select(cfg, "model.loss", default=None)
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
