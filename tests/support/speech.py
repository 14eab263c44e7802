"""Test speech, made and heard offline: espeak-ng recordings and the clock's words.

`recording()` synthesizes a phrase with the `espeak-ng` command and converts it with
`sox` (both Debian packages the bootstrap installs), at test time, into a temporary
directory. `hour_heard()` recognizes an agent's spoken time ("It is 2:05 PM.") with
the model's own recognizer against a grammar of every time of day.
"""

from __future__ import annotations

import subprocess
import wave
from datetime import datetime
from pathlib import Path

import numpy as np

from gateway.audio.pcm import MonoResampler
from gateway.models.local_live.recognizer import recognize_jsgf

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty"}
HOURS = [*ONES[1:], "ten", "eleven", "twelve"]


def recording(tmp_path: Path, text: str, rate_hz: int = 16_000, pad_s: float = 0.0) -> bytes:
    """`text` spoken by espeak-ng (voice en-us) as mono s16 PCM at `rate_hz`."""
    raw = tmp_path / "espeak.wav"
    out = tmp_path / f"speech-{rate_hz}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True, timeout=30)
    command = ["sox", str(raw), "-r", str(rate_hz), "-c", "1", "-b", "16", str(out)]
    if pad_s:
        command += ["pad", str(pad_s), str(pad_s)]
    subprocess.run(command, check=True, timeout=30)
    with wave.open(str(out)) as w:
        frames: bytes = w.readframes(w.getnframes())
        return frames


def minute_words(minute: int) -> str:
    """As espeak-ng reads the minutes of "2:05": "zero five"; "2:45": "forty five"."""
    if minute < 10:
        return f"zero {ONES[minute]}"
    if minute < 20:
        return TEENS[minute - 10]
    tens, ones = divmod(minute, 10)
    return TENS[tens] + (f" {ONES[ones]}" if ones else "")


def time_grammar() -> str:
    """JSGF for "it is <hour> <minutes> a m|p m", minutes as espeak-ng reads them."""
    minutes = " | ".join(minute_words(m) for m in range(60))
    return (
        "#JSGF V1.0;\ngrammar clock;\n"
        "public <time> = it is <hour> <minutes> (a m | p m);\n"
        f"<hour> = {' | '.join(HOURS)};\n<minutes> = {minutes};\n"
    )


def hour_word(now: datetime) -> str:
    return HOURS[(now.hour % 12 or 12) - 1]


def hour_heard(pcm: bytes, rate_hz: int) -> str:
    """The hour word in a spoken time ("" when no time of day is recognized).

    Measured on the synthesizer's renderings of every hour at five minutes each:
    120 of 120 heard right (see `recognize_jsgf`).
    """
    pcm16 = MonoResampler(16_000).pcm(pcm, rate_hz) if rate_hz != 16_000 else pcm
    heard = recognize_jsgf(pcm16, time_grammar())
    words = heard.split()
    return words[2] if len(words) > 2 else ""


def voiced_s(pcm: bytes, rate_hz: int, threshold: float = 500.0, frame_s: float = 0.02) -> float:
    """Seconds of `pcm` (mono s16) in frames louder than `threshold` RMS."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    step = int(rate_hz * frame_s)
    frames = [samples[i : i + step] for i in range(0, len(samples) - step + 1, step)]
    return sum(frame_s for f in frames if np.sqrt(np.mean(f**2)) >= threshold)
