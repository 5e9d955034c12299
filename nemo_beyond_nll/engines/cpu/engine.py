"""The CPU engine's face (engines.Engine): every command runs the engine's workers under torchrun."""

from __future__ import annotations

from typing import Iterable

from ...config import ConfigError
from ...run_folder import RunFolder
from . import launch


class CpuEngine:
    """A tiny Megatron-Core GPT under torchrun with gloo, end to end on this machine's CPU."""

    runs_here = True

    def check(self, cfg, command: str) -> None:
        if command == "import":
            raise ConfigError("import converts a Hugging Face backbone for engine=bridge; this recipe trains from scratch")

    def dry_run(self, cfg, command: str) -> Iterable[str]:
        return ()  # the resolved config says it all

    def sft(self, cfg) -> int:
        return launch.launch_workers(cfg, "train")

    def eval(self, cfg) -> int:
        if not RunFolder.of(cfg).latest.exists():
            raise ConfigError(f"no checkpoint in {cfg.checkpoint.dir}: run `nemo-beyond-nll sft` with this config first")
        return launch.launch_workers(cfg, "eval")

    def probe(self, cfg) -> int:
        return launch.launch_workers(cfg, "probe")

    def continuum(self, cfg) -> int:
        return launch.launch_workers(cfg, "continuum")

    def import_backbone(self, cfg) -> int:
        self.check(cfg, "import")
        return 0
