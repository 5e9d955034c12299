"""Former module paths, kept so that existing imports keep working: each names the very same module.

One table, :data:`MOVED`, maps a former path to its new home; a former package maps every module
under it. The finder is installed by the package's ``__init__`` and imports nothing until a former
path is imported, so no alias file sits in the tree and nothing is loaded twice.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Optional

_ROOT = __name__.rpartition(".")[0]

# former path (relative to the package) -> new path; a trailing "." maps a whole package
MOVED = {
    "objectives": "core.objectives",
    "vocab_parallel": "core.vocab_parallel",
    "linear": "core.linear",
    "triton_kernels": "core.triton_kernels",
    "eval.benchmarks": "eval.benchmark_sets",
    "eval.math": "domains.math.answers",
    "eval.medical": "domains.medical.answers",
    "eval.figfont": "domains.figfont.answers",
    "train": "engines.cpu",
    "train.cpu_trainer": "engines.cpu.trainer",
    "train.cpu_worker": "engines.cpu.worker",
    "train.": "engines.cpu.",
    "megatron.bridge": "engines.bridge.finetune",
    "megatron.dataset_helpers": "engines.bridge.dataset_helpers",
    "megatron.probe_runner": "engines.bridge.probe",
    "megatron.cpu": "engines.cpu.runtime",
    "megatron.models": "engines.cpu.models",
    "megatron.generate": "engines.cpu.generate",
}


def new_path(fullname: str) -> Optional[str]:
    """The module a former path names now, or None when `fullname` is not a former path."""
    if not fullname.startswith(_ROOT + "."):
        return None
    name = fullname[len(_ROOT) + 1:]
    if name in MOVED:
        return f"{_ROOT}.{MOVED[name]}"
    for old, new in MOVED.items():
        if old.endswith(".") and name.startswith(old):
            return f"{_ROOT}.{new}{name[len(old):]}"
    return None


class FormerPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a former path as its new module (the same object, registered under both names)."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if new_path(fullname) else None

    def create_module(self, spec):
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module):
        # importlib returns whatever sys.modules holds for the name once this returns, so the
        # moved module keeps its own __spec__ and is never executed a second time.
        sys.modules[module.__name__] = importlib.import_module(new_path(module.__name__))


def install() -> None:
    """Put the finder first on sys.meta_path (once): a former package's own modules must not be
    found again through its new __path__ under the former name."""
    if not any(isinstance(f, FormerPathFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, FormerPathFinder())
