"""A tiny random-weight Llama-shaped backbone with a word-level tokenizer, written locally (no hub
access), for the tiers whose environments have transformers (AutoModel, Hugging Face)."""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0-3: pad, bos, eos, unk


def write_tiny_llama(folder: Path, words: list, vocab_size: int, seed: int = 0) -> Path:
    """A LlamaForCausalLM (2 layers, hidden 32) over `vocab_size` ids and a tokenizer of SPECIALS +
    `words`, split on whitespace, saved in `folder`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + list(words))}
    assert len(vocab) <= vocab_size, (len(vocab), vocab_size)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
