"""Domain-free SFT data plumbing: reading sources, the prompt/completion JSON Lines with a
train/validation split (:mod:`.pipeline`), packing, and the CPU recipes' synthetic tasks and
character tokenizer. The three domains' builders are in :mod:`nemo_beyond_nll.domains`.
"""

from .pipeline import Example, SkipRow, SplitFileError, check_split_file, hf_chat_template, write_sft_splits

__all__ = ["Example", "SkipRow", "SplitFileError", "check_split_file", "hf_chat_template", "write_sft_splits"]
