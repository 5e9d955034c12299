"""The math and the kernels; knows no training framework (torch and, optionally, triton only).

- :mod:`.objectives`: the f(p) family, one table row per objective;
- :mod:`.passes`: the steps of the two-pass, one-collective loss as public functions (torch pass bodies);
- :mod:`.backends`: the one place that chooses torch or Triton for the two passes;
- :mod:`.triton_kernels`: the two passes as Triton kernels;
- :mod:`.vocab_parallel`: the autograd Function over (sharded) logits and ``vocab_parallel_objective``;
- :mod:`.linear`: the output layer fused with the objective, without a logits tensor;
- :mod:`.functional` and :mod:`.module`: the loss as a function and as a ``torch.nn.Module``.
"""
