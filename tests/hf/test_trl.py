"""The objectives against TRL's SFTTrainer: our `neg_p` has the gradients of TRL's `loss_type="dft"`
(-sg(p) log p, whose gradient is p * (softmax - onehot), as 1 - p's), both normalised by
num_items_in_batch, with gradient accumulation 1 and 4; our `dft` is TRL's in value too."""

import pytest

from .tier import WHY

pytest.importorskip("trl", reason=WHY)

from transformers import default_data_collator  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from nemo_beyond_nll.hf import HFObjectiveLoss, ObjectiveSFTTrainer  # noqa: E402

from .tiny import assert_same_gradients, load_model, load_tokenizer, train, training_args  # noqa: E402


def sft_args(out, accumulation, **extra):
    # The rows are already tokenized and padded, with labels and attention mask: TRL takes them as they
    # are (it would keep only input_ids and labels of its own preparation). SFTConfig's bf16 default is off.
    return training_args(out, accumulation=accumulation, args_class=SFTConfig, max_length=None, packing=False,
                         dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False, bf16=False,
                         **extra)


def trl_dft(model_dir, data, out, accumulation):
    return train(SFTTrainer, model=load_model(model_dir), args=sft_args(out, accumulation, loss_type="dft"), data=data,
                 processing_class=load_tokenizer(model_dir), data_collator=default_data_collator)


def test_sft_config_has_dft():
    assert SFTConfig(output_dir="unused", use_cpu=True, loss_type="dft").loss_type == "dft"


@pytest.mark.parametrize("accumulation", [1, 4])
def test_neg_p_has_trl_dft_gradients(model_dir, data, tmp_path, accumulation):
    _, dft_grads, dft_losses = trl_dft(model_dir, data, tmp_path, accumulation)
    _, our_grads, our_losses = train(model=load_model(model_dir), args=training_args(tmp_path, accumulation=accumulation),
                                     data=data, compute_loss_func=HFObjectiveLoss("neg_p"))
    assert_same_gradients(our_grads, dft_grads)
    # Same gradient, different value: 1 - p against -p log p (at p about 1/36: 0.97 against 0.1).
    assert all(ours > 5 * theirs for ours, theirs in zip(our_losses, dft_losses))

    # Our dft objective is TRL's, value and gradient.
    _, grads, losses = train(model=load_model(model_dir), args=training_args(tmp_path, accumulation=accumulation),
                             data=data, compute_loss_func=HFObjectiveLoss("dft"))
    assert_same_gradients(grads, dft_grads)
    assert losses == pytest.approx(dft_losses, rel=1e-5)


def test_objective_sft_trainer_neg_p_on_the_fused_layer_has_trl_dft_gradients(model_dir, data, tmp_path):
    _, dft_grads, _ = trl_dft(model_dir, data, tmp_path, 4)
    trainer, grads, _ = train(ObjectiveSFTTrainer, model=load_model(model_dir), args=sft_args(tmp_path, 4), data=data,
                              processing_class=load_tokenizer(model_dir), data_collator=default_data_collator,
                              objective_loss=HFObjectiveLoss("neg_p"))
    assert_same_gradients(grads, dft_grads)
    assert all("mean_prob" in e for e in trainer.state.log_history if "loss" in e)
