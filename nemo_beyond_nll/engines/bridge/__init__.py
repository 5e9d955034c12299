"""The Bridge engine: a GPU recipe as Megatron-Bridge's ConfigContainer, fine-tuned with Bridge's own
`finetune` and the objective's training step; and the backbone probe. Imports Megatron-Bridge lazily."""
