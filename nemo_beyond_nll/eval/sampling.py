"""How each benchmark is decoded: k generations per problem, temperature, top-p, new tokens.

A recipe's `eval` section sets the defaults (`num_generations`, `temperature`, `top_p`,
`max_new_tokens`) and `eval.per_benchmark` changes any of them for one benchmark:

    eval:
      max_new_tokens: 4096
      num_generations: 16   # k outputs per problem
      temperature: 1.0
      top_p: 1.0
      per_benchmark:
        aime24: {num_generations: 32}

Greedy decoding (temperature 0) of one output per problem is the default; k > 1 needs a
temperature above 0, since greedy outputs would all be the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional, Sequence

SAMPLING_KEYS = ("num_generations", "temperature", "top_p", "max_new_tokens")


@dataclass(frozen=True)
class Sampling:
    num_generations: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 3072

    def __post_init__(self):
        check_sampling(asdict(self))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def describe(self) -> str:
        how = "greedy" if self.greedy else f"temperature={self.temperature:g}, top_p={self.top_p:g}"
        return f"{how}, {self.num_generations} per problem, max_new_tokens={self.max_new_tokens}"


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_sampling(settings: Mapping[str, Any], where: str = "") -> None:
    """ValueError naming the first setting out of range (`where` prefixes the key, as "eval.")."""
    k, temperature = settings.get("num_generations", 1), settings.get("temperature", 0.0)
    top_p, tokens = settings.get("top_p", 1.0), settings.get("max_new_tokens", 1)
    if not _positive_int(k):
        raise ValueError(f"{where}num_generations must be a positive integer, got {k!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"{where}temperature must be >= 0, got {temperature!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"{where}top_p must lie in (0, 1], got {top_p!r}")
    if not _positive_int(tokens):
        raise ValueError(f"{where}max_new_tokens must be a positive integer, got {tokens!r}")
    if k > 1 and temperature == 0:
        raise ValueError(f"{where}num_generations={k} needs temperature > 0: greedy generations are all the same")


def benchmark_sampling(eval_cfg, benchmark: str) -> Sampling:
    """The settings of `benchmark` under a recipe's `eval` section: its defaults, then
    `eval.per_benchmark[benchmark]`'s keys that are set."""
    settings: Dict[str, Any] = {
        "num_generations": eval_cfg.num_generations,
        "temperature": float(eval_cfg.temperature),
        "top_p": float(eval_cfg.top_p),
        "max_new_tokens": eval_cfg.max_new_tokens,
    }
    override = (eval_cfg.per_benchmark or {}).get(benchmark)
    if override is not None:
        for key in SAMPLING_KEYS:
            value = override.get(key)
            if value is not None:
                settings[key] = float(value) if key in ("temperature", "top_p") else value
    where = f"eval.per_benchmark.{benchmark}." if override is not None else "eval."
    check_sampling(settings, where)
    return Sampling(**settings)


def recipe_sampling(eval_cfg, benchmarks: Optional[Sequence[str]] = None) -> Dict[str, Sampling]:
    """{benchmark: Sampling} for `benchmarks` (eval.benchmarks by default); a name in
    eval.per_benchmark that is not among them is an error (a typo would silently change nothing)."""
    names = list(eval_cfg.benchmarks if benchmarks is None else benchmarks)
    stray = sorted(set(eval_cfg.per_benchmark or {}) - set(names))
    if stray:
        raise ValueError(f"eval.per_benchmark names {', '.join(stray)}, not in eval.benchmarks ({', '.join(names)})")
    return {name: benchmark_sampling(eval_cfg, name) for name in names}
