"""Text-to-speech voices and their fixed roles.

Roles never change (../shared/ASSETS.md), so every accuracy figure is on speech
no model was trained on:

- training: espeak-ng (any accent, variant, pitch, speed), flite kal, kal16, awb, rms
- evaluation: flite slt, festival kal_diphone (reported, never trained on)
- reserved: festival ked_diphone, festival cmu_us_slt_arctic_hts, piper (never
  used by speechrag at all: independent checks run on them)

A voice is written ``engine:name`` (``flite:slt``, ``festival:kal_diphone``,
``espeak-ng:en-gb-scotland+f3:p60:s150``). ``espeak-ng`` alone means "draw a
random accent, variant, pitch and speed", seeded per utterance.

A flite voice can also be **shifted** into another speaker: ``flite:awb:w1.2:f150`` is
awb with its vocal tract shortened by 1.2 and a mean pitch of 150 Hz x 1.2 (``w``: the
voice speaks ``w`` times slower, ``--setf duration_stretch``, and the audio is then
played ``w`` times faster by resampling, so tempo is kept while pitch and formants rise
by ``w``, the classic vocal-tract-length perturbation; ``f``: flite's
``int_f0_target_mean``, which the diphone and awb voices follow and rms ignores).
``flite:awb:shift`` draws a speaker, seeded per utterance: ``w`` in
:data:`SHIFT_WARP` and a mean pitch after the warp in :data:`SHIFT_F0_HZ`. The training
voices are four male speakers (kal16 is kal); shifting them is how a train corpus hears
other speakers, female ones included, without touching the evaluation voices. A shifted
voice keeps its base voice's role.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechrag import audio

TRAINING = ("espeak-ng", "flite:kal", "flite:kal16", "flite:awb", "flite:rms")
EVALUATION = ("flite:slt", "festival:kal_diphone")
RESERVED = ("festival:ked_diphone", "festival:cmu_us_slt_arctic_hts", "piper")

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "klatt4", "Annie", "Andy", "Denis", "Gene",
                   "Lee", "Linda", "Mike", "Paul", "Rob", "Steph", "Zac")
ENGINES = {"flite": "flite", "festival": "text2wave", "espeak-ng": "espeak-ng"}
SHIFT_WARP = (0.95, 1.3)  # vocal-tract factor drawn by ``:shift`` (female voices: ~1.15-1.2)
SHIFT_F0_HZ = (95.0, 250.0)  # mean pitch after the warp drawn by ``:shift``


class VoiceError(ValueError):
    """A voice name that is unknown, reserved, or whose engine is not installed."""


@dataclass(frozen=True)
class Voice:
    """A concrete voice: engine, voice name, (espeak-ng only) pitch and speed, and (flite
    only) a speaker shift: vocal-tract warp and target mean pitch (module docstring)."""

    engine: str
    name: str
    pitch: int = 50  # espeak-ng -p, 0..99
    speed: int = 165  # espeak-ng -s, words per minute
    warp: float = 1.0  # flite: pitch, formants (and, before resampling, tempo) x warp
    f0: int = 0  # flite: int_f0_target_mean in Hz before the warp; 0 keeps the voice's own

    @property
    def id(self) -> str:
        if self.engine == "espeak-ng":
            return f"espeak-ng:{self.name}:p{self.pitch}:s{self.speed}"
        shift = (f":w{self.warp:.2f}" if self.warp != 1.0 else "") + (
            f":f{self.f0}" if self.f0 else "")
        return f"{self.engine}:{self.name}{shift}"

    @property
    def role(self) -> str:
        return role_of(self.id)


def role_of(voice: str) -> str:
    """'training', 'evaluation' or 'reserved' for a voice spec or id (a shifted flite
    voice has its base voice's role)."""
    if voice.startswith("espeak-ng"):
        return "training"
    if voice.startswith("flite:"):
        voice = ":".join(voice.split(":")[:2])
    if voice in EVALUATION:
        return "evaluation"
    if voice in TRAINING:
        return "training"
    if voice in RESERVED or voice.startswith("piper"):
        return "reserved"
    raise VoiceError(f"unknown voice {voice!r}; training: {', '.join(TRAINING)}; "
                     f"evaluation: {', '.join(EVALUATION)}")


def parse_voice(spec: str, rng: random.Random | None = None) -> Voice:
    """A voice spec -> a concrete Voice. Reserved voices are refused here, once for all."""
    if role_of(spec) == "reserved":
        raise VoiceError(f"{spec!r} is a reserved voice: speechrag never uses it")
    engine, _, rest = spec.partition(":")
    if engine not in ENGINES:
        raise VoiceError(f"unknown TTS engine in {spec!r}; one of {sorted(ENGINES)}")
    if engine == "flite":
        return _parse_flite(spec, rest, rng)
    if engine != "espeak-ng":
        return Voice(engine, rest)
    if not rest:  # draw a random espeak-ng voice
        rng = rng or random.Random(0)
        return Voice("espeak-ng", f"{rng.choice(ESPEAK_ACCENTS)}+{rng.choice(ESPEAK_VARIANTS)}",
                     pitch=rng.randint(25, 75), speed=rng.randint(135, 190))
    name, *opts = rest.split(":")
    pitch, speed = 50, 165
    for opt in opts:
        if opt[:1] == "p" and opt[1:].isdigit():
            pitch = int(opt[1:])
        elif opt[:1] == "s" and opt[1:].isdigit():
            speed = int(opt[1:])
        else:
            raise VoiceError(f"bad espeak-ng option {opt!r} in {spec!r} (use pNN or sNNN)")
    return Voice("espeak-ng", name, pitch, speed)


def _parse_flite(spec: str, rest: str, rng: random.Random | None) -> Voice:
    """``name[:shift | :wW[:fF]]`` -> a flite Voice (module docstring)."""
    name, *opts = rest.split(":")
    if opts == ["shift"]:
        rng = rng or random.Random(0)
        warp = round(rng.uniform(*SHIFT_WARP), 2)
        return Voice("flite", name, warp=warp, f0=round(rng.uniform(*SHIFT_F0_HZ) / warp))
    warp, f0 = 1.0, 0
    for opt in opts:
        try:
            if opt[:1] == "w":
                warp = float(opt[1:])
                if not 0.7 <= warp <= 1.5:
                    raise ValueError
            elif opt[:1] == "f" and opt[1:].isdigit() and 50 <= int(opt[1:]) <= 400:
                f0 = int(opt[1:])
            else:
                raise ValueError
        except ValueError:
            raise VoiceError(f"bad flite option {opt!r} in {spec!r} (use shift, or w0.7 to "
                             "w1.5 and f50 to f400)") from None
    return Voice("flite", name, warp=warp, f0=f0)


def check_engine(engine: str) -> None:
    exe = ENGINES[engine]
    if shutil.which(exe) is None:
        raise VoiceError(f"TTS engine {engine} is not installed ({exe} not on PATH); "
                         "`make demo` installs it (apt-get install espeak-ng flite festival "
                         "festvox-kallpc16k)")


def synthesize(text: str, voice: Voice, out: Path) -> float:
    """Speak ``text`` with ``voice`` into ``out`` (16 kHz mono PCM wav). Returns seconds."""
    check_engine(voice.engine)
    with tempfile.TemporaryDirectory() as tmp:
        txt = Path(tmp) / "text.txt"
        wav = Path(tmp) / "raw.wav"
        txt.write_text(text + "\n", encoding="utf-8")
        if voice.engine == "flite":
            cmd = ["flite", "-voice", voice.name, "-f", str(txt), "-o", str(wav)]
            if voice.warp != 1.0:
                cmd += ["--setf", f"duration_stretch={voice.warp}"]
            if voice.f0:
                cmd += ["--setf", f"int_f0_target_mean={voice.f0}"]
        elif voice.engine == "festival":
            cmd = ["text2wave", "-eval", f"(voice_{voice.name})", str(txt), "-o", str(wav)]
        else:
            cmd = ["espeak-ng", "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.speed),
                   "-f", str(txt), "-w", str(wav)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not wav.exists() or wav.stat().st_size <= 44:
            raise VoiceError(f"{voice.id} failed: {proc.stderr.strip()[-300:] or 'no audio'}")
        samples = audio.load(wav)
    if voice.warp != 1.0:  # played warp x faster: tempo back, pitch and formants x warp
        samples = soxr.resample(samples, audio.SAMPLE_RATE * voice.warp,
                                audio.SAMPLE_RATE).astype(np.float32)
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak > 0.99:  # some engines clip; keep headroom so PCM16 does not wrap
        samples = samples * (0.95 / peak)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp.wav")
    sf.write(str(tmp_out), samples, audio.SAMPLE_RATE, subtype="PCM_16")
    tmp_out.replace(out)
    return len(samples) / audio.SAMPLE_RATE
