"""Domain-free SFT data plumbing: reading sources, the prompt/completion JSON Lines with a
train/validation split (:mod:`.pipeline`), packing, and the CPU recipes' synthetic tasks and
character tokenizer. The three domains' builders are in :mod:`nemo_beyond_nll.domains`.
"""

from .pipeline import Example, SkipRow, SplitFileError, check_split_file, hf_chat_template, write_sft_splits

__all__ = ["Example", "SkipRow", "SplitFileError", "check_split_file", "hf_chat_template", "write_sft_splits"]


def __getattr__(name):
    # Former home of build(), BUILDERS and DOMAINS, now in nemo_beyond_nll.domains: resolved on first
    # use, so that importing data never imports the domains built on top of it.
    if name in ("build", "BUILDERS", "DOMAINS"):
        import importlib

        return getattr(importlib.import_module("nemo_beyond_nll.domains"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
