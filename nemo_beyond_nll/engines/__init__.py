"""Engines that run a recipe: `cpu` (a tiny Megatron-Core GPT under torchrun with gloo, end to end on
a CPU) and `bridge` (Megatron-Bridge's own fine-tuning on GPUs). Both reduce, measure p and count
steps with the shared code of `megatron`, `probe` and `data.schedule`.

Each engine shows one face, :class:`Engine`; :data:`ENGINES` maps a recipe's `engine` key to it. An
engine's module is imported when a recipe asks for it, so that the table costs nothing to import.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Protocol


class Engine(Protocol):
    """What an engine does for each command the CLI runs on a recipe. A command returns its exit code;
    a user's mistake is a one-line ConfigError (or run_folder.RunRefused)."""

    runs_here: bool  # its commands run on this machine's CPU (a dry run may then run them, e.g. a probe)

    def check(self, cfg, command: str) -> None:
        """Refuse a command this engine does not run on this recipe, before any dry run."""

    def dry_run(self, cfg, command: str) -> Iterable[str]:
        """The engine's side of a dry run, part by part (printed as each is known)."""

    def sft(self, cfg) -> int: ...

    def eval(self, cfg) -> int: ...

    def probe(self, cfg) -> int: ...

    def import_backbone(self, cfg) -> int: ...

    def continuum(self, cfg) -> int: ...


def _cpu() -> Engine:
    from .cpu.engine import CpuEngine

    return CpuEngine()


def _bridge() -> Engine:
    from .bridge.engine import BridgeEngine

    return BridgeEngine()


ENGINES: Dict[str, Callable[[], Engine]] = {"cpu": _cpu, "bridge": _bridge}


def engine_for(cfg) -> Engine:
    """The engine a recipe names (its `engine` key, which the recipe schema checks)."""
    return ENGINES[cfg.engine]()
