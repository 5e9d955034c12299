#!/usr/bin/env bash
# Launch a GPU recipe on this node with torchrun; run the same command on every node.
#
#   recipes/launch/torchrun.sh RECIPE.yaml [key=value ...]
#
# Environment (defaults in brackets):
#   NNODES [1]  NODE_RANK [0]  GPUS_PER_NODE [8]  MASTER_ADDR [127.0.0.1]  MASTER_PORT [29500]
#   RDZV_ID [nemo_beyond_nll]  DRY_RUN [0: run; 1: print the command instead]
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 RECIPE.yaml [key=value ...]" >&2
  exit 2
fi
recipe=$1
shift
if [ ! -f "$recipe" ]; then
  echo "$0: recipe not found: $recipe" >&2
  exit 2
fi
# torchrun through the package's wrapper: stopped by a signal, the run's stop line comes last (no traceback).
cmd=(python -m nemo_beyond_nll.engines.torchrun --stop-line
  --nnodes="${NNODES:-1}"
  --node_rank="${NODE_RANK:-0}"
  --nproc_per_node="${GPUS_PER_NODE:-8}"
  --rdzv_backend=c10d
  --rdzv_id="${RDZV_ID:-nemo_beyond_nll}"
  --rdzv_endpoint="${MASTER_ADDR:-127.0.0.1}:${MASTER_PORT:-29500}"
  -m nemo_beyond_nll sft --config "$recipe" "$@")
if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
# Fail fast, on one node, on a config error, before any process group starts.
# The config first, then the files it reads on this node: a dry run's warnings are errors here.
check=$(python -m nemo_beyond_nll sft --config "$recipe" --dry-run "$@")
if problems=$(grep '^# warning: ' <<< "$check"); then
  sed "s|^# warning: |$0: error: |" <<< "$problems" >&2
  exit 2
fi
export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}
exec "${cmd[@]}"
