"""The frames of the "model" speaking: audio chunks with their transcription, as 3.x sends.

On the 3.x models one `serverContent` carries several parts (research notes 1.2: "a
single server event can carry several parts (audio + transcription)"): the reply's
first audio chunk comes together with the start of its `outputTranscription` and,
for a spoken user turn, that turn's one final `inputTranscription` (ADK 2.13: "Gemini
3.x Live only sends a single final input transcription"). The transcription then runs
along the audio word by word, so a reply cut halfway carries about half its words.

Pure functions; imports only the standard library and the double's `audio` module.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

from tests.support.live_api_double.audio import OUTPUT_MIME, OUTPUT_RATE_HZ

#: Audio per `serverContent` (the double's choice: small enough to cut a reply finely).
CHUNK_S = 0.04
#: Chunks go out at twice real time: tests stay fast, clients still see paced audio.
SPEED = 2.0
_CHUNK_BYTES = round(CHUNK_S * OUTPUT_RATE_HZ) * 2


def transcript_pieces(text: str, chunks: int) -> list[str]:
    """`text` spread evenly over `chunks` pieces in whole words, the first word with
    the first chunk and the last with the last; the pieces joined give `text` back."""
    pieces = [""] * chunks
    words = re.findall(r"\s*\S+\s*", text)
    for index, word in enumerate(words):
        pieces[index * (chunks - 1) // max(1, len(words) - 1)] += word
    return pieces


def audio_part(pcm: bytes) -> dict[str, Any]:
    return {"inlineData": {"mimeType": OUTPUT_MIME, "data": base64.b64encode(pcm).decode()}}


def speech_contents(
    text: str, pcm: bytes, heard: str | None = None, cut_s: float | None = None
) -> list[tuple[dict[str, Any], int]]:
    """The `serverContent` bodies of one reply's speech, each with its audio bytes.

    `heard` is the user turn's final input transcription (first frame only); `cut_s`
    stops the audio, and the words that go with it, that far into the reply.
    """
    limit = len(pcm) if cut_s is None else min(len(pcm), round(cut_s * OUTPUT_RATE_HZ) * 2)
    count = max(1, math.ceil(len(pcm) / _CHUNK_BYTES))
    pieces = transcript_pieces(text, count)
    contents: list[tuple[dict[str, Any], int]] = []
    for index, piece in enumerate(pieces):
        start = index * _CHUNK_BYTES
        if start >= limit and (index > 0 or cut_s is not None):
            break  # no audio left; an empty reply still carries its words once
        chunk = pcm[start : min(start + _CHUNK_BYTES, limit)]
        content: dict[str, Any] = {}
        if chunk:
            content["modelTurn"] = {"parts": [audio_part(chunk)]}
        if piece:
            content["outputTranscription"] = {"text": piece}
        if index == 0 and heard is not None:
            content["inputTranscription"] = {"text": heard, "finished": True}
        if content:
            contents.append((content, len(chunk)))
    return contents
