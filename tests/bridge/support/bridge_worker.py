"""One job of the real-Bridge tier in a process of its own (started by the tests, under torchrun).

    python -m torch.distributed.run --standalone --nproc_per_node=N bridge_worker.py JOB RECIPE [overrides]

JOB: `import` (the CLI's import), `sft` (the CLI's sft: our step), `sft-record` (the same, and each
rank writes the loss sum, kept-token count and rows of each of its training micro-batches to
<run>/micro_batches.rank<R>.json), `bridge-sft` (the same config
with Bridge's own forward step and loss), `probe` (the CLI's probe), and, as a plain process (no
torchrun, as the evaluation runs it), `export` (the run's latest checkpoint to Hugging Face). The CUDA redirects of cpu_redirects.py are applied first; everything
else is the project's and Megatron-Bridge's own code.
"""

from __future__ import annotations

import sys


def _gloo_group() -> None:
    """Bridge's importer and the probe's model provider start an NCCL group when none exists: start gloo first."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")


def _auto(recipe, overrides) -> bool:
    from nemo_beyond_nll.config import is_auto
    from nemo_beyond_nll.recipe import load_recipe

    return is_auto(load_recipe(recipe, overrides))


def export_with_megatron_logits(recipe, overrides) -> int:
    """Export the run's latest checkpoint to Hugging Face format (the project's export), and save the
    Megatron model's logits for fixed tokens beside it (`megatron_logits.pt`) for the test to compare."""
    import torch
    from megatron.core import tensor_parallel
    from megatron.bridge.training.model_load_save import load_megatron_model, temporary_distributed_context

    from nemo_beyond_nll.engines.bridge.evaluate import export_hf_checkpoint, latest_checkpoint
    from nemo_beyond_nll.engines.cpu.runtime import causal_mask
    from nemo_beyond_nll.recipe import load_recipe
    from nemo_beyond_nll.run_folder import RunFolder

    cfg = load_recipe(recipe, overrides)
    exported = export_hf_checkpoint(cfg)  # Bridge's exporter starts (and ends) a process group of its own
    tokens = torch.arange(3, 3 + 24).reshape(2, 12)
    position_ids = torch.arange(12)[None].expand(2, -1)
    with temporary_distributed_context(backend="gloo"):
        model = load_megatron_model(str(latest_checkpoint(RunFolder.of(cfg).checkpoints)), use_cpu_init=True,
                                    skip_temp_dist_context=True)
        model = model[0] if isinstance(model, list) else model
        model.eval()
        tensor_parallel.model_parallel_cuda_manual_seed(0)  # attention forks the model-parallel RNG stream
        with torch.no_grad():
            logits = model(tokens, position_ids, causal_mask(12))
    torch.save({"tokens": tokens, "logits": logits.float()}, exported / "megatron_logits.pt")
    print(f"exported to {exported}")
    return 0


def sft_recording_micro_batches(recipe, overrides) -> int:
    """The CLI's sft, recording per training micro-batch (step, loss sum over its counted tokens,
    their count, each row's summed p) from the per-token loss, kept, p and loss-mask tensors the
    step's loss function gets, before any reduction, so a test can reduce them itself."""
    import json
    import os
    from pathlib import Path

    from nemo_beyond_nll import cli
    from nemo_beyond_nll.megatron.step import ObjectiveForwardStep, installed_output
    from nemo_beyond_nll.recipe import load_recipe

    rows, own_loss = [], ObjectiveForwardStep.loss

    def loss(self, state, model, loss_mask, output_tensor):
        if model.training:
            out, mask = installed_output(model), loss_mask.double()
            counted = out.kept.reshape(mask.shape).double() * mask
            rows.append({"step": state.train_state.step + 1,  # Bridge counts the step after it
                         "sum": float((output_tensor.reshape(mask.shape).double() * counted).sum()),
                         "kept": float(counted.sum()),
                         # each row's summed target probability: which rows the micro-batch holds
                         "row_p": (out.prob.reshape(mask.shape).double() * mask).sum(dim=1).tolist()})
        return own_loss(self, state, model, loss_mask, output_tensor)

    ObjectiveForwardStep.loss = loss
    code = cli.main(["sft", "--config", recipe, *overrides])
    out = Path(load_recipe(recipe, overrides).checkpoint.dir) / f"micro_batches.rank{os.environ.get('RANK', '0')}.json"
    out.write_text(json.dumps(rows))
    return code


def main(argv) -> int:
    import cpu_redirects

    cpu_redirects.apply()
    cpu_redirects.apply_bridge()
    job, recipe, *overrides = argv
    from nemo_beyond_nll import cli

    if job in ("import", "probe") or (job == "sft" and _auto(recipe, overrides)):
        _gloo_group()  # model.loss=auto probes the backbone before Bridge starts its own group
    if job == "bridge-sft":
        from megatron.bridge.training import gpt_step
        from megatron.bridge.training.finetune import finetune

        from nemo_beyond_nll.engines.bridge.finetune import build_config
        from nemo_beyond_nll.engines.bridge.dataset_helpers import use_prebuilt_dataset_helpers
        from nemo_beyond_nll.recipe import load_recipe

        use_prebuilt_dataset_helpers()
        finetune(build_config(load_recipe(recipe, overrides)), gpt_step.forward_step)
        return 0
    if job == "export":
        return export_with_megatron_logits(recipe, overrides)
    if job == "sft-record":
        return sft_recording_micro_batches(recipe, overrides)
    return cli.main([job, "--config", recipe, *overrides])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
