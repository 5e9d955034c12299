"""The Bridge engine's face (engines.Engine): Megatron-Bridge's fine-tuning, the GPU probe and the
vLLM evaluation. Pure Python until a command runs; Megatron-Bridge is imported inside."""

from __future__ import annotations

from typing import Iterator

from ...config import ConfigError
from . import finetune


class BridgeEngine:
    """A Hugging Face backbone fine-tuned by Megatron-Bridge on GPUs (launched under torchrun)."""

    runs_here = False

    def check(self, cfg, command: str) -> None:
        """Every command applies to a bridge recipe."""

    def dry_run(self, cfg, command: str) -> Iterator[str]:
        if command == "sft":
            yield from finetune.describe_parts(cfg)
        elif command == "eval":
            from .evaluate import describe_gpu_eval

            yield describe_gpu_eval(cfg)
        elif command == "import":
            yield f"# would import {cfg.model.hf_path} -> {finetune.pretrained_checkpoint(cfg)}\n"

    def sft(self, cfg) -> int:
        return finetune.run_sft(cfg)

    def eval(self, cfg) -> int:
        from ...eval.backends import BackendUnavailable
        from .evaluate import run_gpu_eval

        try:
            return run_gpu_eval(cfg)
        except BackendUnavailable as err:  # vLLM, Megatron-Bridge or transformers missing
            raise ConfigError(str(err)) from None

    def probe(self, cfg) -> int:
        from ...run_folder import held, record_config
        from .probe import run_bridge_probe

        with held(cfg.checkpoint.dir) as lock_fd:
            if lock_fd >= 0:  # another rank of this run writes it
                record_config(cfg)
            return run_bridge_probe(cfg)

    def import_backbone(self, cfg) -> int:
        print(f"imported {cfg.model.hf_path} -> {finetune.import_checkpoint(cfg)}")
        return 0

    def continuum(self, cfg) -> int:
        raise ConfigError("continuum runs the cpu engine; use a recipe with engine: cpu")
