import torch

from nemo_beyond_nll.engines.cpu.runtime import causal_mask, init_megatron_cpu
from nemo_beyond_nll.engines.cpu.models import TinyGPTConfig, build_tiny_gpt
from nemo_beyond_nll.megatron.completions import completion_probabilities, probe_batches


def encode(text):
    return [3 + ord(c) % 60 for c in text]


def test_probe_batches_pack_prompt_and_completion():
    rows = [{"prompt": "ab", "completion": "cd"}, {"prompt": "a", "completion": "bcdefghij"}, {"prompt": "x", "completion": "y"}]
    batches = probe_batches(rows, encode, seq_length=6, pad_id=0, eos_id=2, batch_size=2)
    assert [b["tokens"].shape for b in batches] == [(2, 6), (1, 6)]
    first = batches[0]
    assert first["tokens"][0].tolist() == encode("abcd") + [2, 0]
    assert first["loss_mask"][0].tolist() == [0, 1, 1, 1, 0, 0]  # predicts c, d, eos
    assert first["loss_mask"][1].tolist() == [1] * 6  # the long completion is cut at seq_length


def test_completion_probabilities_match_log_softmax():
    init_megatron_cpu(tensor_parallel=1)
    model = build_tiny_gpt(TinyGPTConfig(vocab_size=64, seq_length=8, hidden_size=32, ffn_hidden_size=64))
    rows = [{"prompt": "abc", "completion": "de"}, {"prompt": "q", "completion": "rstu"}]
    batches = probe_batches(rows, encode, seq_length=8, pad_id=0, eos_id=2, batch_size=2)
    values = completion_probabilities(model, batches, causal_mask(8))
    batch = batches[0]
    with torch.no_grad():
        logits = model(batch["tokens"], torch.arange(8)[None].expand(2, -1), causal_mask(8))
    p = torch.softmax(logits.double(), -1).gather(-1, batch["labels"][..., None]).squeeze(-1)
    torch.testing.assert_close(values.double(), p[batch["loss_mask"].bool()], rtol=1e-5, atol=1e-7)
    assert values.numel() == 3 + 5


def test_gather_across_ranks(torchrun):
    expected = [0.0, 10.0, 11.0, 20.0, 21.0, 22.0]  # rank r sends r + 1 values
    assert [r["gathered"] for r in torchrun("megatron/gather_worker.py", 3)] == [expected] * 3
