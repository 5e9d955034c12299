import pytest

from nemo_beyond_nll.engines.cpu.runtime import init_megatron_cpu
from nemo_beyond_nll.engines.cpu.models import TinyGPTConfig, build_tiny_gpt


class CudaOnlyNorm:
    """Stands for Transformer Engine's norm, which TransformerBlock picks whenever TE imports."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("CUDAGuardImpl initialized with non-CUDA DeviceType: cpu")


def test_tiny_gpt_keeps_every_norm_local_where_transformer_engine_imports(monkeypatch):
    from megatron.core.transformer import transformer_block

    monkeypatch.setattr(transformer_block, "LayerNormImpl", CudaOnlyNorm)
    init_megatron_cpu(tensor_parallel=1)
    model = build_tiny_gpt(TinyGPTConfig(vocab_size=64, seq_length=8, hidden_size=32, num_attention_heads=4,
                                         ffn_hidden_size=64))
    norms = [type(m).__module__ for name, m in model.named_modules() if name.endswith("layernorm")]
    assert norms and not any("transformer_engine" in n for n in norms)
    assert type(model.decoder.final_layernorm).__name__ != "CudaOnlyNorm"


def test_tiny_gpt_with_layer_spec_would_pick_the_cuda_norm(monkeypatch):
    """The failure the block spec avoids: a bare layer spec takes TransformerBlock's LayerNormImpl."""
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer import transformer_block
    from megatron.core.transformer.transformer_config import TransformerConfig

    monkeypatch.setattr(transformer_block, "LayerNormImpl", CudaOnlyNorm)
    init_megatron_cpu(tensor_parallel=1)
    config = TransformerConfig(num_layers=1, hidden_size=32, num_attention_heads=4, use_cpu_initialization=True)
    with pytest.raises(RuntimeError, match="CUDAGuardImpl"):
        GPTModel(config=config, transformer_layer_spec=get_gpt_layer_local_spec(), vocab_size=64,
                 max_sequence_length=8)


def test_the_recipes_tiny_section_is_tiny_gpt_configs_architecture():
    """The CPU engine passes model.tiny whole to TinyGPTConfig: same names, same defaults."""
    import dataclasses

    from nemo_beyond_nll.recipe import TinyModel

    defaults = {f.name: f.default for f in dataclasses.fields(TinyGPTConfig)}
    assert {f.name: f.default for f in dataclasses.fields(TinyModel)}.items() <= defaults.items()
