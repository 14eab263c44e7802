"""Readings of what a connection sent (`LiveConnection.sent`), for assertions.

The frames are recorded with audio payloads replaced by their byte count
(`wire.strip_audio`), so these are pure functions of plain JSON. Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Frames = Sequence[dict[str, Any]]
_CONTENT_EVENTS = ("modelTurn", "interrupted", "generationComplete", "turnComplete")


def server_contents(sent: Frames) -> list[dict[str, Any]]:
    """The `serverContent` bodies, in order."""
    return [m["serverContent"] for m in sent if "serverContent" in m]


def trace(sent: Frames) -> list[str]:
    """The frames as event names (`toolCall`, `modelTurn`, `interrupted`,
    `turnComplete`, `usageMetadata`, ...); a run of audio frames counts once."""
    names: list[str] = []
    for message in sent:
        content = message.get("serverContent", {})
        for key in _CONTENT_EVENTS:
            if key in content and not (key == "modelTurn" and names[-1:] == ["modelTurn"]):
                names.append(key)
        names.extend(k for k in message if k != "serverContent")
    return names


def spoken(sent: Frames) -> list[str]:
    """The output transcription of each reply, split at turnComplete / interrupted."""
    utterances = [""]
    for content in server_contents(sent):
        utterances[-1] += content.get("outputTranscription", {}).get("text", "")
        if (content.get("turnComplete") or content.get("interrupted")) and utterances[-1]:
            utterances.append("")
    return [u for u in utterances if u]


def audio_bytes(sent: Frames) -> int:
    """The model audio sent, in bytes of 24 kHz s16le PCM."""
    return sum(
        int(part["inlineData"]["data"])
        for content in server_contents(sent)
        for part in content.get("modelTurn", {}).get("parts", [])
        if "inlineData" in part
    )


def input_transcriptions(sent: Frames) -> list[dict[str, Any]]:
    """Every `inputTranscription` sent (3.x: one final one per user turn)."""
    return [c["inputTranscription"] for c in server_contents(sent) if "inputTranscription" in c]
