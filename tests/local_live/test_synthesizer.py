"""espeak-ng synthesis, in-process and through the command line.

Pins down:
- the library streams a sentence as several 24 kHz mono s16 chunks whose speech,
  recognized offline, says what was written;
- stopping a stream part-way leaves the library ready for the next sentence;
- the `espeak-ng` command fallback says the same thing at the same rate.
"""

from __future__ import annotations

import contextlib

from gateway.audio.formats import AGENT_OUTPUT_RATE_HZ
from gateway.models.local_live.synthesizer import EspeakCommand, EspeakLibrary, SpeechSynthesizer
from tests.support.speech import hours_heard, voiced_s

RATE = AGENT_OUTPUT_RATE_HZ
SENTENCE = "It is 7:05 PM."


async def chunks_of(synthesizer: SpeechSynthesizer, text: str) -> list[bytes]:
    return [chunk async for chunk in synthesizer.stream(text)]


async def test_library_streams_recognizable_speech() -> None:
    chunks = await chunks_of(EspeakLibrary.load(), SENTENCE)
    assert len(chunks) >= 5
    assert all(len(c) % 2 == 0 for c in chunks)
    speech = b"".join(chunks)
    assert 0.8 <= voiced_s(speech, RATE) <= len(speech) / (2 * RATE)
    assert "seven" in hours_heard(speech, RATE)


async def test_stopping_a_stream_leaves_the_library_usable() -> None:
    library = EspeakLibrary.load()
    stream = library.stream("This sentence is long enough to be stopped well before its end.")
    async with contextlib.aclosing(stream):
        received = [await anext(stream) for _ in range(2)]
    assert len(received) == 2
    assert "seven" in hours_heard(b"".join(await chunks_of(library, SENTENCE)), RATE)


async def test_command_line_fallback_says_the_same() -> None:
    speech = b"".join(await chunks_of(EspeakCommand.find(), SENTENCE))
    library_speech = b"".join(await chunks_of(EspeakLibrary.load(), SENTENCE))
    assert "seven" in hours_heard(speech, RATE)
    assert abs(voiced_s(speech, RATE) - voiced_s(library_speech, RATE)) < 0.3
