"""Offline recognizers side by side: word error rate, right replies, CPU, VAD.

    .venv/bin/python bench/offline_asr.py [--voices en-us,en-gb,en-us+f3,en-us+m3]

A test set built here: the agent questions below, spoken by several espeak-ng
voices, each under every condition of `tests/support/conditions.py` (clean, -25 dB,
clipped +12 dB, 8 kHz band, Opus 24 kbit/s, pink noise at 20 and 10 dB SNR), with
0.3 s of quiet around the speech. Each utterance goes, whole, through:

- `pocketsphinx`: the previous recognizer (grammar of the agent's phrases, then the
  open language model for anything else), as `local-live-pocketsphinx` uses it;
- `whisper`: Whisper tiny.en with the 15 s window and the phrase matcher, as
  `local-live` uses it;
- `whisper-30s`: the same with faster-whisper's full 30 s window.

Reported per recognizer and condition: word error rate of the transcript the caller
sees (normalized words), sentences exactly right, replies right (the reply chosen
on what was heard equals the reply to what was said), CPU seconds per decode
(process time, all threads: the utterances are decoded one at a time) and wall time.
Plus the Silero VAD endpointer: utterances it found speech in, and speech starts in
20 s of pink noise.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import wave
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from gateway.models.local_live.endpointer import Endpointer, SpeechStarted, TurnEnded
from gateway.models.local_live.listeners import SphinxRecognizer, WhisperRecognizer
from gateway.models.local_live.recognizer import Recognition, normalize
from gateway.models.local_live.replies import ToolSpec, decide, grammar_phrases
from tests.support.conditions import CONDITIONS, pink_noise

QUESTIONS = [
    "what time is it now",
    "tell me the time",
    "what day is it today",
    "hello there",
    "thank you very much",
    "who are you",
    "goodbye",
    "tell me a joke",
    "what is the weather in paris",
    "can you search the web for cheap flights",
]
TOOLS = [ToolSpec("get_current_time", "Returns the current local time and date.")]
PAD_BYTES = 9600  # 0.3 s of 16 kHz s16


def word_errors(said: str, heard: str) -> int:
    """Word-level edit distance (substitutions, insertions, deletions)."""
    a, b = said.split(), heard.split()
    row = list(range(len(b) + 1))
    for i, word in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]


def speech_s(pcm: bytes) -> float | None:
    ends = [e for e in Endpointer().feed(pcm + bytes(32_000)) if isinstance(e, TurnEnded)]
    return sum(e.speech_s for e in ends) if ends else None


def sphinx(phrases: list[str]) -> Callable[[bytes], Recognition]:
    recognizer = SphinxRecognizer(phrases)

    def recognize(pcm: bytes) -> Recognition:
        recognizer.start(pcm)
        return recognizer.end(speech_s(pcm))

    return recognize


def whisper_with(phrases: list[str], window_s: float) -> Callable[[bytes], Recognition]:
    recognizer = WhisperRecognizer(phrases, window_s=window_s)

    def recognize(pcm: bytes) -> Recognition:
        recognizer.start(pcm)
        return recognizer.end(None)

    return recognize


def test_set(voices: list[str]) -> list[tuple[str, str, str, bytes]]:
    """(question, voice, condition, 16 kHz PCM) for every combination."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice in voices:
            for question in QUESTIONS:
                clean = recording_with_voice(Path(tmp), question, voice)
                padded = bytes(PAD_BYTES) + clean + bytes(PAD_BYTES)
                for name, condition in CONDITIONS.items():
                    out.append((question, voice, name, condition(padded)))
    return out


def recording_with_voice(folder: Path, text: str, voice: str) -> bytes:
    """`text` spoken by espeak-ng's `voice`, 16 kHz mono s16."""
    raw, wav = folder / "raw.wav", folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, timeout=30)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    with wave.open(str(wav)) as w:
        frames: bytes = w.readframes(w.getnframes())
    return frames


def vad_report(samples: list[tuple[str, str, str, bytes]]) -> None:
    found: dict[str, list[bool]] = defaultdict(list)
    for _, _, condition, pcm in samples:
        events = Endpointer().feed(pcm + bytes(32_000))
        found[condition].append(any(isinstance(e, SpeechStarted) for e in events))
    for condition, hits in found.items():
        print(f"VAD {condition:>17}: speech found in {sum(hits)}/{len(hits)}")
    endpointer = Endpointer()
    noise = pink_noise(20 * 16_000, 3000).astype("<i2").tobytes()
    started = time.process_time()
    events = endpointer.feed(noise)
    cpu = time.process_time() - started
    print(
        f"VAD pink noise 20 s at -20 dBFS: {sum(isinstance(e, SpeechStarted) for e in events)} "
        f"speech starts; {cpu / 20 * 100:.1f} % of a core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voices", default="en-us,en-gb,en-us+f3,en-us+m3")
    args = parser.parse_args()
    samples = test_set(args.voices.split(","))
    print(f"{len(samples)} utterances: {len(QUESTIONS)} questions x voices x conditions")
    vad_report(samples)
    phrases = grammar_phrases(TOOLS)
    recognizers = {
        "pocketsphinx": sphinx(phrases),
        "whisper": whisper_with(phrases, 15.0),
        "whisper-30s": whisper_with(phrases, 30.0),
    }
    # rows[recognizer][condition] = (errors, words, exact, replies right, cpu s, wall s)
    rows: dict[str, dict[str, list[tuple[int, int, bool, bool, float, float]]]] = {
        name: defaultdict(list) for name in recognizers
    }
    for question, _voice, condition, pcm in samples:
        wanted = decide(question, TOOLS)
        for name, recognize in recognizers.items():  # side by side, same moment
            started, wall_started = time.process_time(), time.perf_counter()
            result = recognize(pcm)
            cpu = time.process_time() - started  # all threads: CTranslate2 has its own
            wall = time.perf_counter() - wall_started
            heard = normalize(result.text)
            rows[name][condition].append(
                (
                    word_errors(question, heard),
                    len(question.split()),
                    heard == question,
                    decide(result.meaning, TOOLS) == wanted,
                    cpu,
                    wall,
                )
            )
    for name, by_condition in rows.items():
        print(f"\n{name}")
        print("| condition | WER | exact | replies right | decode CPU s / wall s (median) |")
        print("| --- | --- | --- | --- | --- |")
        everything = [r for results in by_condition.values() for r in results]
        for condition, results in [*by_condition.items(), ("all", everything)]:
            errors = sum(r[0] for r in results)
            words = sum(r[1] for r in results)
            print(
                f"| {condition} | {100 * errors / words:.1f} % "
                f"| {sum(r[2] for r in results)}/{len(results)} "
                f"| {sum(r[3] for r in results)}/{len(results)} "
                f"| {statistics.median(r[4] for r in results):.3f} "
                f"/ {statistics.median(r[5] for r in results):.3f} |"
            )


if __name__ == "__main__":
    main()
