"""Importing the adapter imports neither transformers nor trl, even where both are installed; the
Trainer classes built on them appear on first access."""

import subprocess
import sys

import pytest

from .tier import WHY

pytest.importorskip("trl", reason=WHY)


def test_the_adapter_imports_neither_transformers_nor_trl():
    code = ("import sys, nemo_beyond_nll.hf; from nemo_beyond_nll.hf import *;"
            "loaded = [m for m in ('transformers', 'trl') if m in sys.modules]; assert not loaded, loaded;"
            "from nemo_beyond_nll.hf import ObjectiveTrainer; assert 'transformers' in sys.modules;"
            "assert 'trl' not in sys.modules, 'ObjectiveTrainer needs only transformers'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_fused_layer_refuses_a_model_that_transforms_its_logits(tmp_path):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from nemo_beyond_nll.hf import install_hidden_states_forward

    model = Gemma2ForCausalLM(Gemma2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                           final_logit_softcapping=30.0))
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        install_hidden_states_forward(model)
