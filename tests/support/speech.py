"""Test speech, made and heard offline: espeak-ng recordings and the clock's words.

`recording()` synthesizes a phrase with the `espeak-ng` command and converts it with
`sox` (both Debian packages the bootstrap installs), at test time, into a temporary
directory. `hours_heard()` recognizes an agent's spoken time ("It is 2:05 PM.") with
pocketsphinx and Whisper tiny.en.
"""

from __future__ import annotations

import re
import subprocess
import wave
from datetime import datetime
from pathlib import Path

import numpy as np

from gateway.audio.pcm import MonoResampler
from gateway.models.local_live import whisper
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


def said_hour(text: str) -> str:
    """The hour word of an agent's written time ("It is 12:54 PM." -> "twelve")."""
    found = re.search(r"\b(\d{1,2}):\d{2}\b", text)
    return HOURS[int(found.group(1)) - 1] if found and 1 <= int(found.group(1)) <= 12 else ""


def hours_heard(pcm: bytes, rate_hz: int) -> set[str]:
    """The hour words two recognizers hear in a spoken time ("It is 2:05 PM."): the
    offline model's pocketsphinx against a grammar of every time of day, and Whisper
    tiny.en (digits: "It is 2.05 pm", "It is 845 pm"). Either alone misses some of
    espeak-ng's renderings: pocketsphinx hears "twelve" as "two" for 11 of the 60
    minutes of 12 PM, Whisper writes "It is well near OPM" for 12:00; a test asserts
    an exact hour on the reply's transcript (`said_hour`) and that a time of day is
    heard in its audio (this set not empty)."""
    pcm16 = MonoResampler(16_000).pcm(pcm, rate_hz) if rate_hz != 16_000 else pcm
    heard = set()
    words = recognize_jsgf(pcm16, time_grammar()).split()
    if len(words) > 2:
        heard.add(words[2])
    found = re.search(r"\bis\s+(\d{1,4})\b", whisper.engine().transcribe(pcm16), re.I)
    if found is not None:
        digits = found.group(1)
        hour = int(digits[:-2] if len(digits) > 2 else digits)
        if 1 <= hour <= 12:
            heard.add(HOURS[hour - 1])
    return heard


def voiced_s(pcm: bytes, rate_hz: int, threshold: float = 500.0, frame_s: float = 0.02) -> float:
    """Seconds of `pcm` (mono s16) in frames louder than `threshold` RMS."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    step = int(rate_hz * frame_s)
    frames = [samples[i : i + step] for i in range(0, len(samples) - step + 1, step)]
    return sum(frame_s for f in frames if np.sqrt(np.mean(f**2)) >= threshold)
