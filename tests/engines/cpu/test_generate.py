import torch

from nemo_beyond_nll.engines.cpu.generate import vocab_parallel_argmax


def test_argmax_without_tensor_parallelism_matches_torch():
    logits = torch.randn(4, 5, 33)
    assert torch.equal(vocab_parallel_argmax(logits, None), logits.argmax(-1))
