"""Which implementation runs the two passes over the logits, chosen here and nowhere else.

Two backends give the same results up to float rounding: "torch" (chunked tensor ops, any device;
:mod:`.passes`) and "triton" (one program per row; :mod:`.triton_kernels`, imported only when used).
:func:`row_stats` and :func:`write_gradient` dispatch on the name that :func:`resolve_backend`
returned once per call of the loss.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Optional

from torch import Tensor

from . import passes

BACKENDS = ("torch", "triton")
BACKEND_ENV = "NEMO_BEYOND_NLL_BACKEND"


@lru_cache(maxsize=None)
def triton_available() -> bool:
    try:
        from . import triton_kernels  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(logits: Tensor, backend: Optional[str] = None) -> str:
    """The backend that runs the two passes: `backend`, else $NEMO_BEYOND_NLL_BACKEND, else
    "triton" for CUDA logits with a contiguous last dimension when triton imports, else "torch"."""
    backend = backend or os.environ.get(BACKEND_ENV) or None
    if backend is None:
        fits = logits.is_cuda and logits.stride(-1) == 1
        return "triton" if fits and triton_available() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton":
        if not triton_available():
            raise ValueError("backend='triton' needs the triton package, which does not import here")
        from . import triton_kernels

        if not logits.is_cuda and not triton_kernels.INTERPRETED:
            raise ValueError(
                "backend='triton' needs CUDA logits, or TRITON_INTERPRET=1 set before triton_kernels "
                "is imported for CPU tensors"
            )
        if logits.stride(-1) != 1:
            raise ValueError("backend='triton' needs logits whose last dimension is contiguous")
    return backend


def row_stats(logits: Tensor, local_target: Tensor, owned: Tensor, backend: str = "torch") -> Tensor:
    """Pass 1 on the chosen backend: [3, N] this rank's row max, sum of exp(z - max), target logit."""
    if backend == "triton":
        from . import triton_kernels

        return triton_kernels.row_stats(logits, local_target, owned)
    return passes.local_row_stats(logits, local_target, owned)


def write_gradient(
    logits: Tensor, grad: Tensor, lse: Tensor, scale: Tensor, local_target: Tensor, owned: Tensor, backend: str = "torch"
) -> None:
    """Pass 2 on the chosen backend: grad = scale * (softmax - onehot); `grad` may be `logits` itself."""
    if backend == "triton":
        from . import triton_kernels

        return triton_kernels.write_gradient(logits, grad, lse, scale, local_target, owned)
    passes.write_gradient(logits, grad, lse, scale, local_target, owned)
