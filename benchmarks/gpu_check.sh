#!/usr/bin/env bash
# The GPU check, prepared to run in one go on a CUDA machine with the project installed
# (`pip install --no-deps -e .` in the NGC NeMo container, or `pip install -e ".[test]"` beside a CUDA torch):
#   1. the Triton kernels and the fused output layer against the torch backend, compiled on CUDA;
#   2. the headline shape: bf16, N=8192, V=131072, TP=1, against Megatron's fused cross entropy
#      (target: >= 3x faster, <= 2 ms on an H200; floor ~1.3 ms at 4.8 TB/s);
#   3. the full grid N in {4096, 16384} x V in {32768, 131072, 151936}, bf16 and fp32, with GB/s;
#   4. the fused output layer at a Llama-like shape.
# Everything lands in $OUT (default benchmarks/results/gpu): logs, CSV, PNG, Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
PEAK_GBPS=${PEAK_GBPS:-4800}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python -m pytest -q -x tests/test_triton_kernels.py tests/test_linear.py tests/test_vocab_parallel.py 2>&1 | tee "$OUT/tests.log"
python benchmarks/loss_benchmark.py --tokens 8192 --vocab 131072 --dtypes bf16 --repeats 10 \
  --peak-gbps "$PEAK_GBPS" --out "$OUT/headline" | tee "$OUT/headline.md"
python benchmarks/loss_benchmark.py --grid --repeats 5 --peak-gbps "$PEAK_GBPS" \
  --objectives nll neg_p neg_p_threshold --out "$OUT/grid" | tee "$OUT/grid.md"
python benchmarks/fused_linear_benchmark.py --tokens 8192 --hidden 4096 --vocab 131072 --dtype bf16 \
  --repeats 5 --out "$OUT/fused" | tee "$OUT/fused.md"
