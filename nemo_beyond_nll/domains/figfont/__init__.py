"""The figfont domain: exact match of the decoded word (:mod:`.answers`), generated FIGlet puzzles as SFT rows (:mod:`.sft`)."""

from .answers import normalize, score
from .sft import INSTRUCTION, build_figfont, figfont_example, generate_puzzles

__all__ = ["INSTRUCTION", "build_figfont", "figfont_example", "generate_puzzles", "normalize", "score"]
