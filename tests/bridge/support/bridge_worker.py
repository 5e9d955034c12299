"""One job of the real-Bridge tier in a process of its own (started by the tests, under torchrun).

    python -m torch.distributed.run --standalone --nproc_per_node=N bridge_worker.py JOB RECIPE [overrides]

JOB: `import` (the CLI's import), `sft` (the CLI's sft: our step), `bridge-sft` (the same config
with Bridge's own forward step and loss), `export` (the run's latest checkpoint to Hugging Face),
`probe` (the CLI's probe). The CUDA redirects of cpu_redirects.py are applied first; everything
else is the project's and Megatron-Bridge's own code.
"""

from __future__ import annotations

import sys


def _gloo_group() -> None:
    """Bridge's importer and exporter start an NCCL group when none exists: start gloo first."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")


def main(argv) -> int:
    import cpu_redirects

    cpu_redirects.apply()
    cpu_redirects.apply_bridge()
    job, recipe, *overrides = argv
    # TEMPORARY until build_config resolves only the recipe's backbone
    import yaml
    from megatron.bridge import AutoBridge
    _hf = yaml.safe_load(open(recipe))["model"]["hf_path"]
    _orig = AutoBridge.from_hf_pretrained.__func__
    AutoBridge.from_hf_pretrained = classmethod(lambda cls, path, *a, **k: _orig(cls, _hf, *a, **k))
    from nemo_beyond_nll import cli

    if job in ("import", "export"):
        _gloo_group()
    if job == "bridge-sft":
        from megatron.bridge.training import gpt_step
        from megatron.bridge.training.finetune import finetune

        from nemo_beyond_nll.megatron.bridge import build_config
        from nemo_beyond_nll.megatron.dataset_helpers import use_prebuilt_dataset_helpers
        from nemo_beyond_nll.recipe import load_recipe

        use_prebuilt_dataset_helpers()
        finetune(build_config(load_recipe(recipe, overrides)), gpt_step.forward_step)
        return 0
    if job == "export":
        from nemo_beyond_nll.eval.backends import export_hf_checkpoint
        from nemo_beyond_nll.recipe import load_recipe

        print(f"exported to {export_hf_checkpoint(load_recipe(recipe, overrides))}")
        return 0
    return cli.main([job, "--config", recipe, *overrides])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
