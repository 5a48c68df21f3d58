#!/usr/bin/env bash
# GPU machine (the workplace's `device` tool), after benchmarks/gpu/prep.py: train several
# runs side by side on the one GPU until SECONDS seconds have passed, then copy each run's
# log, curves and checkpoints (not last.pt, which holds the optimizer) to $OUT/NAME/.
# A run killed by the deadline keeps its last evaluated model.pt; the same call again on
# the same warm machine resumes it from last.pt. The 16 cores are split between the runs
# (OMP_NUM_THREADS): on 2026-11-23 two caching processes with 16 threads each ran about
# 10x slower than one alone (thread oversubscription is the likely cause, not verified).
#
#   source benchmarks/gpu/env.sh && benchmarks/gpu/train.sh SECONDS CORPUS \
#       ARCH:NAME:CONFIG[:INIT] ...
set -uo pipefail
deadline=$1 corpus=$2; shift 2
R=/root/sr/runs F=/root/sr/features O=${OUT:-/tmp/out}
mkdir -p $R $O
export OMP_NUM_THREADS=$(( $(nproc) / $# > 0 ? $(nproc) / $# : 1 ))
for spec in "$@"; do
  IFS=: read -r arch name config init <<< "$spec"
  args="'--corpus', '$corpus', '--config', '$config', '--out', '$R/$name', '--features', '$F', '--quiet'"
  [ -n "${init:-}" ] && args="$args, '--init', '$init'"
  timeout $((deadline - SECONDS)) python3 -c \
    "from speechrag.train.$arch import main; main([$args])" > $O/$name.out 2>&1 &
done
wait
for spec in "$@"; do
  IFS=: read -r arch name config init <<< "$spec"
  mkdir -p $O/$name
  cp $R/$name/log.jsonl $R/$name/curves.png $R/$name/model.pt $R/$name/best.pt $O/$name/ 2>/dev/null
  echo "$name: $(wc -l < $R/$name/log.jsonl 2>/dev/null) log rows; $(tail -c 600 $O/$name.out)"
done
