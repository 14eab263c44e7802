"""The seed protocol's pure parts: request parameters and the event encoder.

Pins down:
- `is_audio` / `events` accept true/false/1/0 and nothing else; ids are checked;
- agent words go out as increments the seed client can append: text chunks as
  they come, a final text only for what was not sent, cumulative transcripts as
  their new suffix, a revised transcript whole; a new turn starts from nothing;
- user transcripts have no seed message; audio is base64 of the exact PCM.
"""

from __future__ import annotations

import base64
import json

import pytest

from gateway.agent_api import (
    AgentAudio,
    AgentInterrupted,
    AgentText,
    Modality,
    Transcript,
    TurnComplete,
)
from gateway.errors import BadRequest
from gateway.wire.seed_websocket import SeedEncoder, SocketParams, parse_params


def test_params_defaults_and_flags() -> None:
    assert parse_params("42", {}) == SocketParams("42", Modality.TEXT, None, False)
    assert parse_params("u", {"is_audio": "TRUE", "events": "1", "session_id": "s-1"}) == (
        SocketParams("u", Modality.AUDIO, "s-1", True)
    )


@pytest.mark.parametrize(
    ("user_id", "query"),
    [("", {}), ("a b", {}), ("x" * 129, {}), ("u", {"is_audio": "yes"}),
     ("u", {"events": "2"}), ("u", {"session_id": "../x"})],
)  # fmt: skip
def test_bad_params_are_bad_requests(user_id: str, query: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse_params(user_id, query)


def words(encoder: SeedEncoder, *events: object) -> list[str | None]:
    out = []
    for event in events:
        frame = encoder.encode(event)  # type: ignore[arg-type]
        out.append(json.loads(frame).get("data") if frame else None)
    return out


def test_text_chunks_then_a_final_that_adds_nothing() -> None:
    encoder = SeedEncoder(events=False)
    got = words(encoder, AgentText("Hel", False), AgentText("lo", False), AgentText("Hello", True))
    assert got == ["Hel", "lo", None]


def test_a_final_text_without_chunks_is_sent_whole() -> None:
    assert words(SeedEncoder(events=False), AgentText("Hello there", True)) == ["Hello there"]


def test_cumulative_transcripts_go_out_as_suffixes_and_a_turn_resets() -> None:
    encoder = SeedEncoder(events=False)
    got = words(
        encoder,
        Transcript("agent", "It is", False),
        Transcript("agent", "It is noon", False),
        Transcript("agent", "It is noon.", True),
        TurnComplete(),
        Transcript("agent", "Next", True),
    )
    assert got == ["It is", " noon", ".", None, "Next"]


def test_incremental_or_revised_transcripts_are_sent_as_they_come() -> None:
    encoder = SeedEncoder(events=False)
    got = words(encoder, Transcript("agent", "One ", False), Transcript("agent", "two", False))
    assert got == ["One ", "two"]


def test_user_transcripts_are_not_seed_messages_and_interrupted_resets() -> None:
    encoder = SeedEncoder(events=False)
    assert encoder.encode(Transcript("user", "hi", True)) is None
    assert words(encoder, Transcript("agent", "Sure", False)) == ["Sure"]
    assert json.loads(encoder.encode(AgentInterrupted()) or "") == {
        "turn_complete": False,
        "interrupted": True,
    }
    assert words(encoder, Transcript("agent", "Sure", False)) == ["Sure"]


def test_audio_is_base64_of_the_exact_pcm() -> None:
    pcm = bytes(range(256)) * 3
    frame = json.loads(SeedEncoder(events=True).encode(AgentAudio(pcm)) or "")
    assert frame["mime_type"] == "audio/pcm"
    assert base64.b64decode(frame["data"]) == pcm
