"""Tool matching, short answers and the recognizer's grammar.

Pins down:
- an utterance or typed turn naming what a tool does calls that tool (the one
  sharing the most words), never a tool with required parameters;
- greetings, goodbyes, thanks and "who are you" get their short answers; anything
  else is echoed ("I heard: ..."); nothing said, no reply;
- a tool's result becomes one short sentence;
- after Whisper, a transcript close to one of the agent's phrases (letters at least
  80 % alike, about as many words) stands for that phrase, the most similar one;
  longer or different sentences stand for themselves;
- the grammar built from the agent's tools is recognizable: espeak-ng saying
  "what time is it now" is recognized exactly, and an out-of-grammar utterance is
  reported as such (then recognized by the open model), even when the grammar
  forces it onto a short phrase (its words then cover too little of the speech).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.models.local_live.endpointer import Endpointer, TurnEnded
from gateway.models.local_live.recognizer import UtteranceRecognizer, in_dictionary
from gateway.models.local_live.replies import (
    CallTool,
    Say,
    ToolSpec,
    closest_phrase,
    decide,
    grammar_phrases,
    spoken_result,
    tool_words,
)
from tests.support.speech import recording

TIME = ToolSpec("get_current_time", "Returns the current local time and date.")
WEATHER = ToolSpec("getWeather", "Returns the weather forecast for today.")
BOOK = ToolSpec("book_table", "Books a table at a restaurant.", required=("restaurant",))
TOOLS = [TIME, WEATHER, BOOK]


@pytest.mark.parametrize(
    ("said", "tool"),
    [
        ("what time is it now", "get_current_time"),
        ("What time is it?", "get_current_time"),
        ("tell me the date", "get_current_time"),
        ("get current time", "get_current_time"),
        ("what is the weather", "getWeather"),
        ("will it rain? what's the forecast", "getWeather"),
    ],
)
def test_requests_call_the_matching_tool(said: str, tool: str) -> None:
    assert decide(said, TOOLS) == CallTool(tool)


def test_tools_with_required_parameters_are_not_called() -> None:
    assert decide("book a table at a restaurant", TOOLS) == Say(
        "I heard: book a table at a restaurant."
    )


@pytest.mark.parametrize(
    ("said", "answer"),
    [
        ("Hello!", "Hello! How can I help you?"),
        ("good morning", "Hello! How can I help you?"),
        ("bye bye", "Goodbye!"),
        ("thank you", "You're welcome."),
        ("stop", "Okay."),
        ("play some music", "I heard: play some music."),
    ],
)
def test_short_answers(said: str, answer: str) -> None:
    assert decide(said, TOOLS) == Say(answer)


def test_who_are_you_lists_callable_tools() -> None:
    reply = decide("who are you", TOOLS)
    assert isinstance(reply, Say)
    assert "get current time" in reply.text
    assert "get weather" in reply.text
    assert "book" not in reply.text


def test_nothing_said_gets_no_reply() -> None:
    assert decide("  ?! ", TOOLS) is None


def test_results_become_sentences() -> None:
    assert spoken_result({"status": "success", "report": "It is 2:05 PM."}) == "It is 2:05 PM."
    assert spoken_result({"result": 42}) == "42"
    assert (
        spoken_result({"status": "ok", "city": "Paris", "temp_c": 21}) == "city Paris, temp c 21."
    )
    assert spoken_result({"error": "boom"}) == "Sorry, that did not work."
    assert spoken_result({}) == "Done."
    assert len(spoken_result({"report": "word " * 500})) <= 403


def test_tool_names_become_words() -> None:
    assert tool_words("get_current_time") == "get current time"
    assert tool_words("getWeather") == "get weather"


@pytest.mark.parametrize(
    ("heard", "phrase"),
    [
        ("What time is it out?", "what time is it now"),  # Whisper on espeak-ng en-us
        ("and you very much", "thank you very much"),
        ("what is it today", "what day is it today"),
        ("Good bye.", "goodbye"),
        ("How are you?", "how are you"),  # not "who are you" (0.91 alike)
        ("Who are you?", "who are you"),
        ("get current time", "get current time"),
        ("What is the weather in Paris?", None),  # two more words
        ("the quick brown fox", None),
        ("", None),
    ],
)
def test_transcripts_match_the_closest_phrase(heard: str, phrase: str | None) -> None:
    assert closest_phrase(heard, grammar_phrases(TOOLS)) == phrase


def test_grammar_phrases_include_the_tools() -> None:
    phrases = grammar_phrases(TOOLS)
    assert "get current time" in phrases
    assert "returns the current local time and date" in phrases
    assert "what time is it now" in phrases
    assert "hello" in phrases
    assert "goodbye" in phrases


def test_espeak_question_is_recognized_in_the_grammar(tmp_path: Path) -> None:
    recognizer = UtteranceRecognizer(grammar_phrases([TIME]))
    try:
        speech = recording(tmp_path, "what time is it now", pad_s=0.3)
        recognizer.begin(speech[:3200])
        partials = [recognizer.feed(speech[i : i + 640]) for i in range(3200, len(speech), 640)]
        result = recognizer.end(speech_s(speech))
        assert result.in_grammar
        assert result.text == "what time is it now"
        assert any(p.startswith("what") for p in partials)
        # Every phrase made it into the grammar (all words are in the dictionary).
        assert all(in_dictionary(recognizer._decoder, p) for p in recognizer.phrases)
    finally:
        recognizer.close()


def speech_s(pcm: bytes) -> float:
    """How long the endpointer finds the caller speaking in `pcm`."""
    ends = [e for e in Endpointer().feed(pcm + bytes(32_000)) if isinstance(e, TurnEnded)]
    assert len(ends) == 1
    return ends[0].speech_s


def test_out_of_grammar_speech_falls_back_to_open_recognition(tmp_path: Path) -> None:
    recognizer = UtteranceRecognizer(grammar_phrases([TIME]))
    try:
        speech = recording(tmp_path, "the quick brown fox jumps over the lazy dog", pad_s=0.3)
        recognizer.begin(speech)
        result = recognizer.end(speech_s(speech))
        assert not result.in_grammar
        assert result.text  # the open model's best guess, whatever it is
        assert result.text not in recognizer.phrases
    finally:
        recognizer.close()
