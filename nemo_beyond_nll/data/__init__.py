"""SFT data for the three domains, as prompt/completion JSON Lines with a train/validation split.

(The CPU recipes' synthetic tasks and character tokenizer are in :mod:`.synthetic` and
:mod:`.char_tokenizer`.)

:func:`build` is the one entry point: `build("math", "AI-MO/NuminaMath-CoT", "data/math")`,
`build("medical", "m23k.parquet", "data/medical", max_length=4096, tokenizer=tok)`,
`build("figfont", None, "data/figfont", size=20000, seed=0)`. See :mod:`.pipeline` for the files
written and the report, and each domain's module for its fields and defaults.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

from .figfont import build_figfont
from .math import build_math
from .medical import build_medical
from .pipeline import Example, SkipRow, hf_chat_template, write_sft_splits

BUILDERS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "math": build_math,
    "medical": build_medical,
    "figfont": build_figfont,
}
DOMAINS = tuple(BUILDERS)


def _option_names(func: Callable) -> set:
    return {p.name for p in inspect.signature(func).parameters.values() if p.kind is p.KEYWORD_ONLY}


def build(domain: str, source: Optional[Union[str, Path]], out_dir: Union[str, Path], **options) -> Dict[str, Any]:
    """Build one domain's SFT files from `source` into `out_dir`; returns the report.

    `source` is a hub id, a local file or folder, or None for the domain's default (the hub id of
    NuminaMath-CoT or m23k; generated puzzles for figfont). `options` are the domain builder's
    and write_sft_splits' keyword arguments (validation_fraction, split_seed, tokenizer,
    max_length, chat_template, dedup, progress, ...).
    """
    if domain not in BUILDERS:
        raise ValueError(f"unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
    builder = BUILDERS[domain]
    known = _option_names(builder) | _option_names(write_sft_splits)
    known -= {"domain", "source", "reasons", "total"}  # set by the builder itself
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {domain} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return builder(source, out_dir, **options)


__all__ = ["BUILDERS", "DOMAINS", "Example", "SkipRow", "build", "hf_chat_template", "write_sft_splits"]
