#!/usr/bin/env bash
# GPU machine (the workplace's `device` tool): a whole GPU session's work in one background
# job, so that no step waits on a call boundary. Started detached from the call that
# carries .dev/common .dev/tts .dev/a, it survives that call (the machine stays while
# calls follow):
#
#   source benchmarks/gpu/env.sh && mkdir -p /root/sr && \
#     (N=6000 SEEDS=0 setsid nohup benchmarks/gpu/job.sh ARCH:NAME:CONFIG[:INIT] ... \
#      > /root/sr/job.log 2>&1 < /dev/null &)
#
# 1. speaks the first N train passages and their queries once per seed in SEEDS (default
#    "0"; "0 1" is the split spoken twice, in other voices), renditions side by side;
#    QUERIES=0 speaks no questions (runs that train on none; the spoken-question
#    validation is then left out);
# 2. caches each rendition's Whisper states (below the top TOP blocks, default 0), one
#    after the other (GPU);
# 3. waits for MiniLM (a later call carries .dev/common .dev/b), for each run's INIT file
#    (.dev/init/clsr.pt: a call carrying .dev/common .dev/init) and, with DECODER=1, for
#    Whisper's decoder blocks (a call carrying .dev/common .dev/c: CLSR's decoder init
#    "whisper"), then trains the runs side by side on every rendition (train.sh, until
#    TRAIN_SECONDS, default 1500; outputs in /root/sr/out, runs in /root/sr/runs).
# A final call stops it (`pkill -f 'train[.]'`: a plain 'speechrag.train' pattern also
# matches, and kills, the call's own shell) and copies /root/sr/runs/NAME/{model.pt,
# log.jsonl,curves.png} to $OUT. On the H100 (2026-11-23): speaking the 8,037 passages twice
# side by side 383 + 68 s, caching each rendition 305 s (bf16 states, before caching
# read audio and computed log-mels in threads), training SEAL 0.2 s a step with validation.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/gpu/env.sh
N=${N:-8037} SEEDS=${SEEDS:-0} TOP=${TOP:-0}
stamp() { echo "[$(date +%T)] $*"; }
corpus() { echo /root/sr/corpus-$N$([ "$1" = 0 ] || echo "-s$1"); }
stamp "speaking $N passages, seeds $SEEDS"
for s in $SEEDS; do
  python3 benchmarks/gpu/prep.py $N --no-cache --seed $s $([ "${QUERIES:-1}" = 0 ] && echo --no-queries) \
    > /root/sr/prep-s$s.log 2>&1 &
done
wait
corpora=()
for s in $SEEDS; do
  tail -n 2 /root/sr/prep-s$s.log
  corpora+=("$(corpus $s)")
done
stamp "caching"
for s in $SEEDS; do
  python3 benchmarks/gpu/prep.py $N --cache-only --top $TOP --seed $s 2>&1 | tail -n 1
done
inits=()  # each run's INIT checkpoint: too big to travel beside .dev/a or .dev/b, it
for spec in "$@"; do  # comes in a call of its own (make_carry.sh puts it in .dev/init)
  IFS=: read -r _ _ _ init <<< "$spec"
  [ -n "${init:-}" ] && inits+=("$init")
done
stamp "waiting for MiniLM (.dev/b)$([ "${DECODER:-0}" = 1 ] && echo " and Whisper's decoder (.dev/c)")${inits[*]:+ and ${inits[*]}}"
W=/root/sr/cache/models/whisper-base
ready() { for f in "${inits[@]}"; do [ -f "$f" ] || return 1; done; }
until [ -d .dev/b/model ] && { [ "${DECODER:-0}" != 1 ] || [ -f $W/.decoder-ok ] || [ -f .dev/c/model.bin.xz ]; } && ready; do
  sleep 5
done
source benchmarks/gpu/env.sh  # unpacks MiniLM and merges the decoder blocks
stamp "training"
OUT=/root/sr/out benchmarks/gpu/train.sh ${TRAIN_SECONDS:-1500} "$(IFS=,; echo "${corpora[*]}")" "$@"
stamp "done"
