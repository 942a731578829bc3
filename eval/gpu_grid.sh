#!/usr/bin/env bash
# Run one evaluation plan on a GPU machine: every method's noise first (one process per method, in
# parallel), then the plan's runs split over SHARDS processes sharing the GPU (tiny victims leave a
# GPU mostly idle, so several at once finish the plan several times sooner). Resumable: finished
# runs in OUT are kept. Noise is cached in $T2UE_CACHE.
#   usage: eval/gpu_grid.sh PLAN.json OUT [SHARDS]
set -u
plan=$1
out=$2
shards=${3:-8}
t2ue=${T2UE:-python3 -m t2ue}
mkdir -p "$out"
methods=$(python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["methods"]))' "$plan")
for method in $methods; do
  $t2ue evaluate --config "$plan" --method "$method" --noise-only --no-progress &
done
wait
for i in $(seq 0 $((shards - 1))); do
  $t2ue evaluate --config "$plan" -o "$out" --device "${DEVICE:-cuda}" --no-progress --shard "$i/$shards" &
done
wait
