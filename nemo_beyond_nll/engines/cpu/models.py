"""Small Megatron-Core GPT models built on CPU, for tests, the CPU recipe and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class TinyGPTConfig:
    vocab_size: int = 256
    seq_length: int = 64
    hidden_size: int = 64
    num_layers: int = 2
    num_attention_heads: int = 4
    ffn_hidden_size: int = 256
    share_embeddings_and_output_weights: bool = False
    mtp_num_layers: Optional[int] = None  # multi-token prediction heads


def build_tiny_gpt(cfg: TinyGPTConfig, *, seed: int = 1234, tensor_parallel: int = 1):
    """A Megatron-Core GPTModel with the local (non-Transformer-Engine) layer spec, fp32, on CPU.

    With the same `seed`, every tensor-parallel size gets the same full weights: CPU initialisation
    draws the whole matrix and gives each rank its slice.
    """
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import (get_gpt_decoder_block_spec, get_gpt_layer_local_spec,
                                                          get_gpt_mtp_block_spec)
    from megatron.core.transformer.transformer_config import TransformerConfig

    config = TransformerConfig(
        num_layers=cfg.num_layers,
        hidden_size=cfg.hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        ffn_hidden_size=cfg.ffn_hidden_size,
        tensor_model_parallel_size=tensor_parallel,
        use_cpu_initialization=True,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        params_dtype=torch.float32,
        mtp_num_layers=cfg.mtp_num_layers,
    )
    spec = get_gpt_layer_local_spec()
    # A block spec, so that the final norm is local too: from a bare layer spec, TransformerBlock
    # picks Transformer Engine's norm whenever TE imports, and TE's norm runs on CUDA only.
    block_spec = get_gpt_decoder_block_spec(config, use_transformer_engine=False)
    mtp_spec = get_gpt_mtp_block_spec(config, spec, use_transformer_engine=False) if cfg.mtp_num_layers else None
    torch.manual_seed(seed)
    return GPTModel(
        config=config,
        transformer_layer_spec=block_spec,
        mtp_block_spec=mtp_spec,
        vocab_size=cfg.vocab_size,
        max_sequence_length=cfg.seq_length,
        parallel_output=True,
        share_embeddings_and_output_weights=cfg.share_embeddings_and_output_weights,
    )
