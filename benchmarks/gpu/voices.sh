#!/usr/bin/env bash
# GPU machine: the voice-variety run of the third GPU session (2026-11-23), as job.sh runs
# it: the train split spoken twice (seeds 0 and 1), both renditions cached, then SEAL
# trained on both from the checkpoint shipped then (config seal-voices.json). Started
# detached like job.sh:
#
#   source benchmarks/gpu/env.sh && mkdir -p /root/sr && \
#     (setsid nohup benchmarks/gpu/voices.sh > /root/sr/voices.log 2>&1 < /dev/null &)
export N=${N:-8037} SEEDS="0 1"
exec "$(dirname "$0")/job.sh" \
  seal:seal-voices:benchmarks/configs/seal/voices.json:src/speechrag/trained/seal.pt
