"""torchrun worker: a GPTModel with install(..., fusion="linear") equals the unfused model at TP=1.

At TP=1 and at TP=world, with separate and with shared embedding/output weights, the fused model's
per-token loss, prob, kept and every parameter gradient must equal the unfused TP=1 model's, the
output layer must not produce logits, and a forward without labels must still return the logits.
Run by test_hook.py; raises on a mismatch.
"""

import dataclasses

import torch
import rank_report
import torch.distributed as dist
from tp_checks import fail
from worker_start import start_worker

import nemo_beyond_nll.megatron.hook as hook
from gpt_tp_worker import CFG, batch, close, full_grad
from nemo_beyond_nll.megatron import install, last_output, uninstall
from nemo_beyond_nll.engines.cpu.runtime import causal_mask, init_megatron_cpu, shutdown_distributed
from nemo_beyond_nll.engines.cpu.models import build_tiny_gpt

OBJECTIVES = ["nll", "neg_p", "OnlyTopP-0.0078", "dft"]
calls = []


def counting(fn):
    def wrapper(*args, **kwargs):
        calls.append(fn.__name__)
        return fn(*args, **kwargs)
    return wrapper


def run(model, objective, fusion):
    install(model, objective, fusion=fusion)
    model.zero_grad()
    tokens, position_ids, labels = batch()
    calls.clear()
    loss = model(tokens, position_ids, causal_mask(CFG.seq_length), labels=labels)
    expected = ["vocab_parallel_linear_objective"] if fusion else ["vocab_parallel_objective"]
    if calls != expected:
        fail(f"fusion={fusion} computed the loss with {calls}")
    upstream = torch.linspace(0.5, 1.5, loss.numel()).view_as(loss)
    (loss * upstream).sum().backward()
    grads = {name: full_grad(p) for name, p in model.named_parameters()}
    return loss.detach(), last_output(model), grads


def logits_without_labels(model):
    tokens, position_ids, _ = batch()
    with torch.no_grad():
        return model(tokens, position_ids, causal_mask(CFG.seq_length))


def compare(got, ref, label):
    loss, out, grads = got
    ref_loss, ref_out, ref_grads = ref
    close(loss, ref_loss, f"{label}: loss")
    close(out.prob, ref_out.prob, f"{label}: prob")
    if not torch.equal(out.kept, ref_out.kept):
        fail(f"{label}: kept differs")
    if grads.keys() != ref_grads.keys():
        fail(f"{label}: parameters differ")
    for pname, grad in grads.items():
        close(grad, ref_grads[pname], f"{label}: grad of {pname}")


def main():
    rank, world, _ = start_worker()
    hook.vocab_parallel_objective = counting(hook.vocab_parallel_objective)
    hook.vocab_parallel_linear_objective = counting(hook.vocab_parallel_linear_objective)
    for shared in (False, True):
        cfg = dataclasses.replace(CFG, share_embeddings_and_output_weights=shared)
        init_megatron_cpu(tensor_parallel=1)
        model = build_tiny_gpt(cfg, tensor_parallel=1)
        reference = {name: run(model, name, None) for name in OBJECTIVES}
        reference_logits = logits_without_labels(model)
        for tp in sorted({1, world}):
            init_megatron_cpu(tensor_parallel=tp)
            model = build_tiny_gpt(cfg, tensor_parallel=tp)
            for name in OBJECTIVES:
                compare(run(model, name, "linear"), reference[name], f"{name} fused TP={tp} shared={shared}")
            logits = logits_without_labels(model)  # fusion installed: no labels, plain logits
            v_local = cfg.vocab_size // tp
            close(logits, reference_logits[..., rank % tp * v_local:(rank % tp + 1) * v_local],
                  f"logits without labels TP={tp}")
            uninstall(model)
            if "forward" in vars(model) or "_postprocess" in vars(model):
                fail("uninstall left the fused forward in place")
    shutdown_distributed()
    return {"tp": world, "objectives": len(OBJECTIVES)}


if __name__ == "__main__":
    rank_report.run(main)
