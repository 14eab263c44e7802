"""ADK live events as the gateway's agent events (audio, transcripts, text, turn signals).

Text mode has two sources: a model that answers in TEXT (the offline models) gives
text parts, partial chunks then the whole text; a model with AUDIO responses only
(every current Gemini Live model) is asked for audio with output transcription, and
its transcription (partial chunks, then the whole text with `finished`, as ADK 2.13's
`GeminiLlmConnection` aggregates it) becomes the `text` events while its audio is
not sent: a text-mode caller gets no audio. What an event tells the stall watchdog
is `EventSignals`. An ADK-facing helper: imports google.adk's `Event`, google.genai
types and the agent seam.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from google.adk.events import Event
from google.genai import types

from gateway.agent_api import (
    AgentAudio,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    AgentText,
    Transcript,
    TurnComplete,
)
from gateway.audio.formats import AGENT_OUTPUT_RATE_HZ, pcm_duration_s

logger = logging.getLogger(__name__)

#: Model error codes that drop one turn but not the call, with the wire code and the
#: message the caller sees (docs/protocol.md). `recognizer_busy`: the offline model's
#: recognition pool was saturated and a turn went unrecognized.
NON_FATAL_MODEL_ERRORS = {
    "recognizer_busy": "the speech recognizer is busy: please say that again",
}


def translate_event(
    event: Event, *, text_mode: bool, text_from_transcription: bool = False
) -> list[AgentEvent]:
    """The agent events an ADK event stands for. With `text_from_transcription`
    (text mode on an AUDIO-only model) the agent's transcription is its text and its
    audio is dropped."""
    from_transcription = text_mode and text_from_transcription
    out: list[AgentEvent] = []
    if event.error_code in NON_FATAL_MODEL_ERRORS:
        code = event.error_code
        out.append(AgentError(code, NON_FATAL_MODEL_ERRORS[code], fatal=False))
    elif event.error_code:
        out.append(AgentError("agent_error", f"the agent reported {event.error_code}"))
    for part in (event.content.parts or []) if event.content else []:
        blob = part.inline_data
        if blob and blob.data and (blob.mime_type or "").startswith("audio/pcm"):
            if from_transcription:
                continue
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("[AGENT TO CLIENT] audio/pcm: %d bytes", len(blob.data))
            out.append(AgentAudio(blob.data))
        elif part.text and text_mode and not part.thought:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("[AGENT TO CLIENT] text/plain: %d bytes", len(part.text.encode()))
            out.append(AgentText(part.text, final=not event.partial))
    for role, transcription in (
        ("user", event.input_transcription),
        ("agent", event.output_transcription),
    ):
        if transcription is not None and transcription.text:
            final = (
                transcription.finished if transcription.finished is not None else not event.partial
            )
            if role == "agent" and from_transcription:
                out.append(AgentText(transcription.text, final=final))
            else:
                out.append(Transcript(role, transcription.text, final))  # type: ignore[arg-type]
    if event.interrupted:
        out.append(AgentInterrupted())
    if event.turn_complete:
        out.append(TurnComplete())
    return out


@dataclass(frozen=True, slots=True)
class EventSignals:
    """What an ADK event says about the model's progress (for the stall watchdog)."""

    output: bool
    """The model spoke, wrote, transcribed its speech or called a tool."""
    audio_s: float
    """Seconds of agent audio the event carries (how long the caller will hear it)."""
    user_turn_ended: bool
    """A final, non-empty input transcription."""
    tool_called: bool
    tool_result: bool
    tool_result_silent: bool
    """Every function response in it is scheduled SILENT: no reaction is due."""
    turn_complete: bool
    interrupted: bool


def event_signals(event: Event) -> EventSignals:
    parts = (event.content.parts or []) if event.content else []
    audio = [
        p.inline_data.data
        for p in parts
        if p.inline_data
        and p.inline_data.data
        and (p.inline_data.mime_type or "").startswith("audio/")
    ]
    texts = [p.text for p in parts if p.text and not p.thought]
    calls = event.get_function_calls()
    responses = event.get_function_responses()
    said = event.output_transcription
    heard = event.input_transcription
    return EventSignals(
        output=bool(audio or texts or calls or (said and said.text)),
        audio_s=sum(pcm_duration_s(pcm, AGENT_OUTPUT_RATE_HZ) for pcm in audio),
        user_turn_ended=bool(heard and heard.text and heard.finished),
        tool_called=bool(calls),
        tool_result=bool(responses),
        tool_result_silent=bool(responses)
        and all(r.scheduling is types.FunctionResponseScheduling.SILENT for r in responses),
        turn_complete=bool(event.turn_complete),
        interrupted=bool(event.interrupted),
    )
