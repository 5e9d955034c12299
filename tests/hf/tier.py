"""What the tier's modules share that imports nothing of transformers: the skip reason."""

WHY = "needs the Hugging Face tier's environment (transformers, trl): run bash tests/hf/run.sh"
