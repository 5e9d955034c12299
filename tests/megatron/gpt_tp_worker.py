"""torchrun worker: a real Megatron-Core GPTModel with install() at TP=world equals TP=1.

Run by test_hook.py as `torchrun --nproc_per_node=N gpt_tp_worker.py`; raises on a mismatch.
"""

import dataclasses

import torch
import rank_report
import torch.distributed as dist
from tp_checks import fail
from worker_start import start_worker

from nemo_beyond_nll import get_objective
from nemo_beyond_nll.megatron import install, last_output, uninstall
from nemo_beyond_nll.engines.cpu.generate import greedy_generate
from nemo_beyond_nll.engines.cpu.runtime import causal_mask, init_megatron_cpu, shutdown_distributed
from nemo_beyond_nll.engines.cpu.models import TinyGPTConfig, build_tiny_gpt

OBJECTIVES = ["nll", "neg_p", "neg_p_power", "OnlyTopP-0.0078", "OnlyBottomLogP-0.0078", "dft", "log_one_minus_p",
              "adaptive_power"]
CFG = TinyGPTConfig(vocab_size=128, seq_length=16, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64)
# With a multi-token-prediction head, whose loss Megatron also computes through the hooked method.
MTP_CFG = dataclasses.replace(CFG, mtp_num_layers=1)
MTP_OBJECTIVES = ["neg_p", "OnlyTopP-0.0078"]


def batch():
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, CFG.vocab_size, (2, CFG.seq_length), generator=g)
    labels = torch.randint(0, CFG.vocab_size, (2, CFG.seq_length), generator=g)
    position_ids = torch.arange(CFG.seq_length)[None].expand(2, -1)
    return tokens, position_ids, labels


def run(model, objective):
    """Per-token loss, prob, kept and full (TP-gathered) gradients of sum(loss * fixed weights)."""
    if objective is None:
        uninstall(model)
    else:
        install(model, objective)
    model.zero_grad()
    tokens, position_ids, labels = batch()
    loss = model(tokens, position_ids, causal_mask(CFG.seq_length), labels=labels)
    upstream = torch.linspace(0.5, 1.5, loss.numel()).view_as(loss)
    (loss * upstream).sum().backward()
    grads = {name: full_grad(p) for name, p in model.named_parameters()}
    out = last_output(model) if objective is not None else None
    return loss.detach(), out, grads


def full_grad(param):
    grad = param.grad.detach()
    if not getattr(param, "tensor_model_parallel", False):
        return grad.clone()
    from megatron.core import parallel_state

    group = parallel_state.get_tensor_model_parallel_group()
    parts = [torch.empty_like(grad) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, grad.contiguous(), group=group)
    return torch.cat(parts, dim=param.partition_dim)


def close(a, b, what, rtol=2e-5, atol=1e-6):
    if not torch.allclose(a, b, rtol=rtol, atol=atol):
        diff = (a - b).abs().max().item()
        fail(f"{what} differs by {diff:.3e}")


PROMPTS = [[5, 9, 13], [7], [100, 3, 64, 2, 90]]


def generate(model):
    return greedy_generate(model, PROMPTS, max_new_tokens=6, seq_length=CFG.seq_length, eos_id=1, pad_id=0)


def run_mtp(model, objective):
    model.eval()  # Megatron logs the MTP loss in training mode only, on CUDA; gradients are the same
    return run(model, objective)


def main():
    rank, world, _ = start_worker()
    init_megatron_cpu(tensor_parallel=1)
    reference = {}
    model = build_tiny_gpt(CFG, tensor_parallel=1)
    reference_generation = generate(model)
    for name in OBJECTIVES + [None]:
        reference[name] = run(model, name)
    mtp_model = build_tiny_gpt(MTP_CFG, tensor_parallel=1)
    mtp_reference = {name: run_mtp(mtp_model, name) for name in MTP_OBJECTIVES + [None]}
    mtp_params = [n for n in mtp_reference[None][2] if n.startswith("mtp.")]
    if not mtp_params or all(torch.allclose(mtp_reference["neg_p"][2][n], mtp_reference[None][2][n])
                             for n in mtp_params):
        fail("the MTP head's gradients do not depend on the installed objective")

    init_megatron_cpu(tensor_parallel=world)
    model = build_tiny_gpt(CFG, tensor_parallel=world)
    if generate(model) != reference_generation:
        fail(f"greedy generation at TP={world} differs from TP=1")
    for name in OBJECTIVES + [None]:
        loss, out, grads = run(model, name)
        ref_loss, ref_out, ref_grads = reference[name]
        label = name or "megatron cross entropy"
        close(loss, ref_loss, f"{label}: loss")
        if out is not None:
            close(out.prob, ref_out.prob, f"{label}: prob")
            if not torch.equal(out.kept, ref_out.kept):
                fail(f"{label}: kept differs")
            if (out.power is None) != (name != "adaptive_power"):
                fail(f"{label}: last_output power {out.power}")
            if out.power is not None:
                close(out.power, ref_out.power, f"{label}: power")
            if get_objective(name).is_thresholded and out.kept.all():
                fail(f"{label}: threshold kept every token; the test would not test it")
        for pname, grad in grads.items():
            close(grad, ref_grads[pname], f"{label}: grad of {pname}")

    mtp_model = build_tiny_gpt(MTP_CFG, tensor_parallel=world)
    for name in MTP_OBJECTIVES:
        loss, out, grads = run_mtp(mtp_model, name)
        ref_loss, ref_out, ref_grads = mtp_reference[name]
        close(loss, ref_loss, f"MTP {name}: loss")
        for pname, grad in grads.items():
            close(grad, ref_grads[pname], f"MTP {name}: grad of {pname}")

    # nll through install() equals Megatron's own vocab_parallel_cross_entropy, values and grads.
    nll_loss, _, nll_grads = reference["nll"]
    mcore_loss, _, mcore_grads = reference[None]
    close(nll_loss, mcore_loss, "nll vs Megatron loss")
    for pname, grad in nll_grads.items():
        close(grad, mcore_grads[pname], f"nll vs Megatron grad of {pname}")
    shutdown_distributed()
    return {"tp": world, "objectives": len(OBJECTIVES), "mtp_objectives": len(MTP_OBJECTIVES)}


if __name__ == "__main__":
    rank_report.run(main)
