"""The Bridge engine: a GPU recipe as Megatron-Bridge's ConfigContainer, fine-tuned with Bridge's own
`finetune` and the objective's training step; the backbone probe; and the GPU evaluation (export,
vLLM, the evaluation runner). Imports Megatron-Bridge lazily."""
