"""A character tokenizer for the synthetic tasks: printable ASCII plus pad, bos and eos."""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from .packing import pack_example


class CharTokenizer:
    pad_id, bos_id, eos_id = 0, 1, 2
    _OFFSET = 3
    _CHARS = "".join(chr(c) for c in range(32, 127))

    def __init__(self, vocab_multiple: int = 128):
        # Megatron splits the vocabulary evenly over TP ranks: pad the size to a round multiple.
        used = self._OFFSET + len(self._CHARS)
        self.vocab_size = -(-used // vocab_multiple) * vocab_multiple

    def encode(self, text: str) -> List[int]:
        bad = [c for c in text if not 32 <= ord(c) < 127]
        if bad:
            raise ValueError(f"character {bad[0]!r} is outside the tokenizer's printable ASCII")
        return [ord(c) - 32 + self._OFFSET for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i >= self._OFFSET and i - self._OFFSET < len(self._CHARS):
                out.append(self._CHARS[i - self._OFFSET])
        return "".join(out)

    def encode_example(self, prompt: str, completion: str, seq_length: int,
                       truncate: bool = False) -> Dict[str, torch.Tensor]:
        """tokens/labels/loss_mask of length seq_length; the loss is on the completion and eos.
        `truncate`: cut an example that does not fit at its end instead of raising."""
        return pack_example([self.bos_id] + self.encode(prompt), self.encode(completion) + [self.eos_id],
                            seq_length, self.pad_id, truncate=truncate)
