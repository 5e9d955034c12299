"""Engines that run a recipe: `cpu` (a tiny Megatron-Core GPT under torchrun with gloo, end to end on
a CPU) and `bridge` (Megatron-Bridge's own fine-tuning on GPUs). Both reduce, measure p and count
steps with the shared code of `megatron`, `probe` and `data.schedule`."""
