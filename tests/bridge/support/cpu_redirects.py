"""Redirect the CUDA-only calls of Megatron-Bridge's training loop to the CPU (test support only).

Megatron-Bridge and Megatron-Core ask for CUDA in a handful of places that have nothing to do with
the numbers a training step computes: device requests ("cuda" tensors, `.cuda()`, pinned memory),
device bookkeeping (`torch.cuda.set_device`, `current_device`, `synchronize`, streams), and CUDA
RNG state. `apply()` points each at the CPU; the model, the loss, the optimizer and the checkpoints
are Bridge's own code, run on CPU tensors with the gloo backend. Nothing of this is product code.
"""

from __future__ import annotations

import contextlib
import functools

import torch

_APPLIED = False

CUDA_FUSIONS = ("apply_rope_fusion", "gradient_accumulation_fusion", "persist_layer_norm", "masked_softmax_fusion")

# torch functions that take a `device=` argument and are called with "cuda" in Bridge/Megatron.
_FACTORIES = ("empty", "zeros", "ones", "full", "tensor", "arange", "rand", "randn", "randint",
              "empty_like", "zeros_like", "ones_like", "full_like", "as_tensor", "linspace", "eye",
              "empty_strided", "randperm")


def _cpu(device):
    if device is None:
        return None
    if isinstance(device, int):
        return torch.device("cpu")
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        return torch.device("cpu")
    return device


def _redirect_device_kwarg(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        kwargs.pop("pin_memory", None)
        return fn(*args, **kwargs)

    return wrapper


class _Stream:
    """Stand-in for torch.cuda.Stream/Event: every operation is already complete on the CPU."""

    def __init__(self, *args, **kwargs):
        pass

    def wait_stream(self, *args):
        pass

    def wait_event(self, *args):
        pass

    def synchronize(self):
        pass

    def record(self, *args):
        pass

    def record_stream(self, *args):
        pass

    def query(self):
        return True

    def elapsed_time(self, other):
        return 0.0


def _tensor_to(original):
    @functools.wraps(original)
    def to(self, *args, **kwargs):
        args = tuple(_cpu(a) if isinstance(a, (str, torch.device)) else a for a in args)
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        return original(self, *args, **kwargs)

    return to


def apply() -> None:
    """Install the redirects (idempotent). Call before Megatron-Bridge sets anything up."""
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    for name in _FACTORIES:
        setattr(torch, name, _redirect_device_kwarg(getattr(torch, name)))
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.Tensor.pin_memory = lambda self, *a, **k: self
    torch.Tensor.to = _tensor_to(torch.Tensor.to)
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.nn.Module.to = _tensor_to(torch.nn.Module.to)

    cuda = torch.cuda
    cuda.set_device = lambda *a, **k: None
    cuda.current_device = lambda: "cpu"
    cuda.synchronize = lambda *a, **k: None
    cuda.empty_cache = lambda: None
    cuda.Stream = _Stream
    cuda.Event = _Stream
    cuda.current_stream = lambda *a, **k: _Stream()
    cuda.default_stream = lambda *a, **k: _Stream()
    cuda.stream = lambda *a, **k: contextlib.nullcontext()
    cuda.set_stream = lambda *a, **k: None
    cuda.memory_allocated = lambda *a, **k: 0
    cuda.max_memory_allocated = lambda *a, **k: 0
    cuda.memory_reserved = lambda *a, **k: 0
    cuda.max_memory_reserved = lambda *a, **k: 0
    cuda.reset_peak_memory_stats = lambda *a, **k: None
    cuda.get_rng_state = lambda *a, **k: torch.get_rng_state()
    cuda.set_rng_state = lambda *a, **k: None
    cuda.manual_seed = lambda *a, **k: None
    cuda.manual_seed_all = lambda *a, **k: None


def apply_bridge() -> None:
    """The Bridge-specific redirects: its initialisation's CUDA assertion, the model-parallel RNG
    tracker, gradient clipping's CUDA kernel, TE/Apex-only fusions and TE's layer spec."""
    from megatron.bridge.training import initialize, setup

    original = initialize.initialize_megatron

    @functools.wraps(original)
    def initialize_megatron(cfg, allow_no_cuda=False, *args, **kwargs):
        return original(cfg, True, *args, **kwargs)  # Bridge's own switch, which its setup never sets

    setup.initialize_megatron = initialize_megatron

    seed = initialize._set_random_seed

    @functools.wraps(seed)
    def set_random_seed(*args, **kwargs):
        seed(*args, **kwargs)
        # Bridge seeds the model-parallel RNG tracker only when a CUDA device exists. Seeded here
        # with the seed Bridge just gave torch, the tracker keeps its named states (through the
        # torch.cuda RNG redirects above) so checkpoints save and restore them as on a GPU; dropout
        # draws from the CPU generator.
        from megatron.core import tensor_parallel

        tensor_parallel.model_parallel_cuda_manual_seed(torch.initial_seed())

    # The tracker's "CUDA" generator state is the CPU generator's: fork() swaps it in and out as it
    # swaps the GPU's on a GPU.
    from megatron.core.tensor_parallel import random as tp_random

    tp_random._get_cuda_rng_state = lambda device="cuda", clone=False, graph_safe=False: torch.get_rng_state()
    tp_random._set_cuda_rng_state = lambda new_state, device=-1, graph_safe=False: torch.set_rng_state(new_state)

    initialize._set_random_seed = set_random_seed

    from megatron.core.optimizer import optimizer

    optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm

    from megatron.bridge.models.transformer_config import TransformerConfig

    finalize = TransformerConfig.finalize

    @functools.wraps(finalize)
    def finalize_without_cuda_fusions(self, *args, **kwargs):
        # Kernels that exist only as TE/Apex/CUDA extensions; the model bridges (Llama's, e.g.)
        # switch some on for every provider they make, importer and exporter included.
        for name in CUDA_FUSIONS:
            if hasattr(self, name):
                setattr(self, name, False)
        return finalize(self, *args, **kwargs)

    TransformerConfig.finalize = finalize_without_cuda_fusions

    # Bridge's default layer spec is Transformer Engine's: build Megatron-Core's local spec instead.
    from megatron.bridge.models import gpt_provider

    gpt_provider.transformer_engine_layer_spec = gpt_provider.local_layer_spec


def _clip_grad_by_total_norm(parameters, max_norm, total_norm, use_decoupled_grad=False):
    """Megatron's clip_grad_by_total_norm_fp32 without its CUDA type assertion and CUDA kernel:
    the same scaling, grad *= min(1, max_norm / (total_norm + 1e-6)), on CPU tensors."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if isinstance(clip_coeff, torch.Tensor):
        clip_coeff = clip_coeff.clamp_max(1.0)
    elif clip_coeff >= 1.0:
        return
    for param in parameters:
        grad = getattr(param, "decoupled_grad", None) if use_decoupled_grad else param.grad
        if grad is not None:
            grad.detach().mul_(clip_coeff)
