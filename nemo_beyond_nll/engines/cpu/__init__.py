"""The CPU engine: a small Megatron-Core training loop run under torchrun with gloo."""
