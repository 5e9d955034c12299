"""The probability-objective family L = f(p), p = softmax(logits)[target].

Every objective is described by two functions of the fp32 target log-probability:
its per-token value f(p) and its gradient weight w(p) = -f'(p) * p, so that
df/dlogits = w(p) * (softmax - onehot). The vocab-parallel function only ever needs
these two, which is why a new objective is one table row here and nothing elsewhere. An objective
whose shape depends on the batch (adaptive_power's m) also gives a `batch` function, which
`Objective.for_batch` applies once per call to make the concrete objective.

Pure torch; nothing here knows about tensor parallelism, Megatron or YAML.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

KEEP_CHOICES = ("above", "below")
DEFAULT_ALPHA = 10.0  # the paper's -p^10
DEFAULT_THRESHOLD = 0.1
DEFAULT_OFFSET = 0.0  # log(1 - p + offset): 0 is the plain log(1 - p)
UNLIKELIHOOD_OFFSET = 1e-3  # the offset the paper's code adds inside log(1 - p + offset)
DEFAULT_MIN_POWER = 1e-3  # adaptive_power's floor on m; there (1 - p^m)/m = -log p - m/2 * log(p)^2 + ...


@dataclass(frozen=True)
class _Family:
    value: Callable[[Tensor, "Objective"], Tensor]  # f from log p (and the objective's arguments)
    weight: Callable[[Tensor, "Objective"], Tensor]  # w from log p (and the objective's arguments)
    params: Tuple[str, ...]
    formula: str
    # Fields that depend on the call's batch, from (detached prob, valid mask, objective); None: batch-free.
    batch: Optional[Callable[[Tensor, Tensor, "Objective"], Dict[str, Tensor]]] = None


def _ones(logp: Tensor, _obj) -> Tensor:
    return torch.ones_like(logp)


def _prob(logp: Tensor, _obj) -> Tensor:
    return logp.exp()


def _one_minus_p_plus(logp: Tensor, offset: float) -> Tensor:
    """1 - p + offset (1 - p as -expm1(log p)), floored at the compute dtype's eps.

    log p comes from fp32 logit - log-sum-exp, so 1 - p below about eps is rounding noise, and
    at p == 1 log(1 - p) and p / (1 - p) are infinite. The floor keeps the value >= log(eps)
    (-15.9 in fp32) and the weight <= 1 / eps (8.4e6); p / max(1 - p, eps) is continuous, so the
    weight has no jump there, and below it the most confident tokens keep the floor's bounded
    push rather than the flat value's zero slope. An offset >= eps (the paper's 1e-3) never
    reaches the floor: value and weight are then exact.
    """
    return (offset - torch.expm1(logp)).clamp_min(torch.finfo(logp.dtype).eps)


def _log_one_minus_p(logp: Tensor, obj) -> Tensor:
    return _one_minus_p_plus(logp, obj.offset).log()


def _odds(logp: Tensor, obj) -> Tensor:
    # -f'(p) * p for f = log(1 - p + offset): p / (1 - p + offset)
    return logp.exp() / _one_minus_p_plus(logp, obj.offset)


def _batch_power(prob: Tensor, valid: Tensor, obj) -> Dict[str, Tensor]:
    """adaptive_power's m: the mean p over the call's supervised rows, in [min_power, 1], as a 0-d tensor.

    `prob` and `valid` are the merged row statistics' p and mask, which every tensor-parallel rank
    holds identically, so m is the same on every rank without a collective. m is per call: one
    micro-batch (with context or sequence parallelism, this rank's slice of it); under data
    parallelism each rank uses its own micro-batch's m. No host sync: the count stays on the device.
    Supervised means not ignore_index: a loss mask applied after the call does not enter m, so a
    caller that masks tokens (prompts) that way sets their labels to ignore_index for m to skip them.
    """
    total = torch.where(valid, prob.detach(), 0.0).sum()
    mean = total / valid.sum().clamp(min=1).to(total.dtype)
    return {"power": mean.clamp(min=obj.min_power, max=1.0)}


def _power(obj) -> Tensor:
    if obj.power is None:
        raise ValueError(f"{obj.name}'s power m is set per call: use objective.for_batch(prob, valid) first")
    return obj.power


# 1 - p and 1 - p^a are written with expm1 so that p close to 1 keeps its precision.
FAMILIES: Dict[str, _Family] = {
    "nll": _Family(lambda lp, o: -lp, _ones, (), "-log p"),
    "neg_p": _Family(lambda lp, o: -torch.expm1(lp), _prob, (), "1 - p"),
    "neg_p_power": _Family(
        lambda lp, o: -torch.expm1(o.alpha * lp) / o.alpha,
        lambda lp, o: torch.exp(o.alpha * lp),
        ("alpha",),
        "(1 - p^alpha) / alpha",
    ),
    "neg_p_threshold": _Family(
        lambda lp, o: -torch.expm1(lp), _prob, ("threshold", "keep"), "1 - p on kept tokens"
    ),
    "nll_threshold": _Family(lambda lp, o: -lp, _ones, ("threshold", "keep"), "-log p on kept tokens"),
    "dft": _Family(lambda lp, o: -lp.exp() * lp, _prob, (), "-sg(p) log p"),
    "log_one_minus_p": _Family(_log_one_minus_p, _odds, ("offset",), "log(1 - p + offset)"),
    "log_one_minus_p_threshold": _Family(
        _log_one_minus_p, _odds, ("offset", "threshold", "keep"), "log(1 - p + offset) on kept tokens"
    ),
    # (1 - p^m)/m with m the batch's mean p: about -log p where the model knows little, 1 - p where it knows much.
    "adaptive_power": _Family(
        lambda lp, o: -torch.expm1(_power(o) * lp) / _power(o),
        lambda lp, o: torch.exp(_power(o) * lp),
        ("min_power",),
        "(1 - p^m) / m, m = mean p of the batch (detached, >= min_power)",
        batch=_batch_power,
    ),
}

# Names used by the paper's reference code (verl `trainer.objective_trans`).
_FIXED_ALIASES = {"original": "nll", "logp": "nll", "p": "neg_p"}
_PATTERN_ALIASES = (
    (re.compile(r"GeneralFamily-(.+)"), "neg_p_power", "alpha", {}),
    (re.compile(r"OnlyTopP-(.+)"), "neg_p_threshold", "threshold", {"keep": "above"}),
    (re.compile(r"OnlyBottomP-(.+)"), "neg_p_threshold", "threshold", {"keep": "below"}),
    (re.compile(r"OnlyTopLogP-(.+)"), "nll_threshold", "threshold", {"keep": "above"}),
    (re.compile(r"OnlyBottomLogP-(.+)"), "nll_threshold", "threshold", {"keep": "below"}),
    # The paper's spelling; its code computes log(1 - p + 1e-3) on the kept tokens.
    (re.compile(r"UnlikehoodTop-(.+)"), "log_one_minus_p_threshold", "threshold",
     {"keep": "above", "offset": UNLIKELIHOOD_OFFSET}),
    (re.compile(r"UnlikehoodBottom-(.+)"), "log_one_minus_p_threshold", "threshold",
     {"keep": "below", "offset": UNLIKELIHOOD_OFFSET}),
)
REFERENCE_NAMES = tuple(_FIXED_ALIASES) + (
    "GeneralFamily-<alpha>",
    "OnlyTopP-<q>",
    "OnlyBottomP-<q>",
    "OnlyTopLogP-<q>",
    "OnlyBottomLogP-<q>",
    "UnlikehoodTop-<q>",
    "UnlikehoodBottom-<q>",
)


@dataclass(frozen=True)
class Objective:
    """One member of the family with its arguments; build it with :func:`get_objective`."""

    name: str
    alpha: Optional[float] = None
    threshold: Optional[float] = None
    keep: Optional[str] = None
    offset: Optional[float] = None
    min_power: Optional[float] = None
    # Set by for_batch for a batch-dependent objective (adaptive_power's m): not an argument, so it
    # takes no part in equality, hashing or printing.
    power: Optional[Tensor] = field(default=None, compare=False, repr=False)

    @property
    def family(self) -> _Family:
        return FAMILIES[self.name]

    @property
    def args(self) -> Dict[str, object]:
        return {k: getattr(self, k) for k in self.family.params}

    @property
    def is_thresholded(self) -> bool:
        return self.threshold is not None

    def for_batch(self, prob: Tensor, valid: Tensor) -> "Objective":
        """The concrete objective for one call, from its detached target probabilities and supervised
        mask; a batch-free objective returns itself."""
        if self.family.batch is None:
            return self
        return replace(self, **self.family.batch(prob, valid, self))

    def value(self, logprob: Tensor) -> Tensor:
        """Per-token f(p) from the target log-probability (no threshold applied)."""
        return self.family.value(logprob, self)

    def weight(self, logprob: Tensor) -> Tensor:
        """Gradient weight w(p) on (softmax - onehot) (no threshold applied)."""
        return self.family.weight(logprob, self)

    def keep_mask(self, prob: Tensor) -> Optional[Tensor]:
        """Threshold mask on the (detached) probability; None when every token is kept."""
        if self.threshold is None:
            return None
        return prob >= self.threshold if self.keep == "above" else prob <= self.threshold

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.name}({args})"


def _as_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"objective argument {name!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"objective argument {name!r} must be finite, got {value}")
    return value


def _validated(name: str, args: dict) -> Objective:
    params = FAMILIES[name].params
    unknown = sorted(set(args) - set(params))
    if unknown:
        takes = ", ".join(params) if params else "no arguments"
        raise ValueError(f"objective {name!r} does not take argument {unknown[0]!r} (it takes {takes})")
    fields = {}
    if "alpha" in params:
        alpha = _as_number("alpha", args.get("alpha", DEFAULT_ALPHA))
        if alpha <= 0:
            raise ValueError(f"objective argument 'alpha' must be > 0, got {alpha}")
        fields["alpha"] = alpha
    if "offset" in params:
        offset = _as_number("offset", args.get("offset", DEFAULT_OFFSET))
        if offset < 0:
            raise ValueError(f"objective argument 'offset' must be >= 0, got {offset}")
        fields["offset"] = offset
    if "min_power" in params:
        min_power = _as_number("min_power", args.get("min_power", DEFAULT_MIN_POWER))
        if not 0.0 < min_power <= 1.0:
            raise ValueError(f"objective argument 'min_power' must lie in (0, 1], got {min_power}")
        fields["min_power"] = min_power
    if "threshold" in params:
        threshold = _as_number("threshold", args.get("threshold", DEFAULT_THRESHOLD))
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"objective argument 'threshold' must lie in [0, 1], got {threshold}")
        keep = args.get("keep", "above")
        if keep not in KEEP_CHOICES:
            raise ValueError(f"objective argument 'keep' must be one of {KEEP_CHOICES}, got {keep!r}")
        fields["threshold"], fields["keep"] = threshold, keep
    return Objective(name, **fields)


def _resolve_alias(name: str) -> Tuple[str, dict]:
    if name in _FIXED_ALIASES:
        return _FIXED_ALIASES[name], {}
    for pattern, canonical, arg, extra in _PATTERN_ALIASES:
        match = pattern.fullmatch(name)
        if match:
            try:
                value = float(match.group(1))
            except ValueError:
                raise ValueError(f"objective name {name!r}: {match.group(1)!r} is not a number") from None
            return canonical, {arg: value, **extra}
    valid = ", ".join(list(FAMILIES) + list(REFERENCE_NAMES))
    raise ValueError(f"unknown objective {name!r}; valid names: {valid}")


def get_objective(name, **args) -> Objective:
    """Return the objective called `name` (canonical or reference name) with `args`.

    >>> get_objective("OnlyTopP-0.1") == get_objective("neg_p_threshold", threshold=0.1)
    True
    """
    if isinstance(name, Objective):
        if args:
            raise ValueError(f"arguments {sorted(args)} given with an already built objective {name}")
        return name
    if not isinstance(name, str):
        raise ValueError(f"objective name must be a string, got {name!r}")
    if name in FAMILIES:
        return _validated(name, args)
    canonical, implied = _resolve_alias(name)
    for key, value in args.items():
        if key in implied and implied[key] != value:
            raise ValueError(
                f"objective argument {key!r}={value!r} contradicts the name {name!r} ({key}={implied[key]!r})"
            )
    return _validated(canonical, {**args, **implied})
