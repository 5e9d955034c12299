"""The medical domain: the chosen option of a multiple-choice answer (:mod:`.answers`), m23k SFT rows (:mod:`.sft`)."""

from .answers import extract_choice, option_map, parse_options, stated_choice
from .sft import HUB_ID, INSTRUCTION, build_medical, medical_example

__all__ = [
    "HUB_ID", "INSTRUCTION", "build_medical", "extract_choice", "medical_example", "option_map", "parse_options",
    "stated_choice",
]
