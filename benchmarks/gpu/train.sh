#!/usr/bin/env bash
# GPU machine (the workplace's `device` tool), after benchmarks/gpu/prep.py: train several
# runs side by side on the one GPU until SECONDS seconds have passed, then leave in $OUT
# what the device tool brings back (at most 8 files, 16 MiB each, 64 MiB together):
# logs.tar (each run's log.jsonl, curves.png and output) and each run's last evaluated model.pt as
# NAME.model.pt, in 15 MiB pieces NAME.model.pt.part-aa ... when larger (`cat` them here).
# A run killed by the deadline keeps its last evaluated model.pt; the same call again on
# the same warm machine resumes it from last.pt. The 16 cores are split between the runs
# (OMP_NUM_THREADS): on 2026-11-23 two caching processes with 16 threads each ran about
# 10x slower than one alone (thread oversubscription is the likely cause, not verified).
#
#   source benchmarks/gpu/env.sh && benchmarks/gpu/train.sh SECONDS CORPUS[,CORPUS...] \
#       ARCH:NAME:CONFIG[:INIT] ...
# (several corpora: renditions of the split trained together, see `speechrag train --help`)
set -uo pipefail
deadline=$1 corpus=$2; shift 2
R=/root/sr/runs F=/root/sr/features O=${OUT:-/tmp/out}
mkdir -p $R $O
export OMP_NUM_THREADS=$(( $(nproc) / $# > 0 ? $(nproc) / $# : 1 ))
for spec in "$@"; do
  IFS=: read -r arch name config init <<< "$spec"
  args="'--config', '$config', '--out', '$R/$name', '--features', '$F', '--quiet'"
  for c in ${corpus//,/ }; do args="$args, '--corpus', '$c'"; done
  [ -n "${init:-}" ] && args="$args, '--init', '$init'"
  mkdir -p $R/$name
  timeout $((deadline - SECONDS)) python3 -c \
    "from speechrag.train.$arch import main; main([$args])" > $R/$name/train.out 2>&1 &
done
wait
names=()
for spec in "$@"; do
  IFS=: read -r arch name config init <<< "$spec"
  names+=("$name")
  echo "$name: $(wc -l < $R/$name/log.jsonl 2>/dev/null) log rows; $(tail -c 600 $R/$name/train.out)"
  m=$R/$name/model.pt
  [ -f $m ] || continue
  if [ $(stat -c %s $m) -gt $((15 * 1024 * 1024)) ]; then
    split -b 15M $m $O/$name.model.pt.part-
  else
    cp $m $O/$name.model.pt
  fi
done
tar -C $R -cf $O/logs.tar $(cd $R && for n in "${names[@]}"; do
  ls -d $n/log.jsonl $n/curves.png $n/train.out 2>/dev/null; done)
ls -la $O
