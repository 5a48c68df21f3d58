#!/usr/bin/env bash
# GPU machine (the workplace's `device` tool): the voice-variety run in one background job,
# so that no step waits on a call boundary. Started detached from the call that carries
# .dev/common .dev/tts .dev/a, it survives that call (the machine stays while calls follow):
#
#   source benchmarks/gpu/env.sh && setsid nohup benchmarks/gpu/voices.sh > /root/sr/voices.log 2>&1 < /dev/null &
#
# 1. speaks the train split twice (seed 0 and seed 1, side by side: TTS is CPU work);
# 2. caches both renditions' Whisper states, one after the other (GPU);
# 3. waits for MiniLM (a later call carries .dev/common .dev/b), then trains SEAL on both
#    renditions from the shipped checkpoint (train.sh, outputs in /root/sr/out).
# A final call stops it (`pkill -f 'train[.]seal'`: a plain 'speechrag.train' pattern also
# matches, and kills, the call's own shell) and copies /root/sr/runs/seal-voices/{model.pt,
# log.jsonl,curves.png} to $OUT. On the H100 (2026-11-23): speaking both renditions side by
# side 383 + 68 s, caching each 305 s (bf16 states), training 0.2 s a step with validation.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/gpu/env.sh
N=${N:-8037}
stamp() { echo "[$(date +%T)] $*"; }
stamp "speaking $N passages twice"
python3 benchmarks/gpu/prep.py $N --no-cache > /root/sr/prep-s0.log 2>&1 &
python3 benchmarks/gpu/prep.py $N --no-cache --seed 1 > /root/sr/prep-s1.log 2>&1 &
wait
tail -n 2 /root/sr/prep-s0.log /root/sr/prep-s1.log
stamp "caching"
python3 benchmarks/gpu/prep.py $N --cache-only --top 0 2>&1 | tail -n 1
python3 benchmarks/gpu/prep.py $N --cache-only --top 0 --seed 1 2>&1 | tail -n 1
stamp "waiting for MiniLM (.dev/b)"
while [ ! -d .dev/b/model ]; do sleep 5; done
source benchmarks/gpu/env.sh
stamp "training"
OUT=/root/sr/out benchmarks/gpu/train.sh ${TRAIN_SECONDS:-1500} /root/sr/corpus-$N,/root/sr/corpus-$N-s1 \
  seal:seal-voices:benchmarks/configs/seal-voices.json:src/speechrag/trained/seal.pt
stamp "done"
