"""Whisper tiny.en, the offline model's default recognizer, and its per-call wrapper.

Pins down:
- the model is the installed wheel's, checked by SHA-256: a missing or different
  `model.bin` is refused with an error naming the file and the expected hash;
- espeak-ng questions are transcribed, and the agent's phrases are matched after
  recognition (the reply is chosen on the phrase, the caller sees Whisper's text);
- partial transcripts re-decode the growing utterance at most every 0.5 s of new
  speech;
- a short window's repeated sentence is cut to one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.models.local_live import whisper
from gateway.models.local_live.listeners import PARTIAL_EVERY_S, WhisperRecognizer
from gateway.models.local_live.recognizer import normalize
from gateway.models.local_live.replies import ToolSpec, grammar_phrases
from tests.support.speech import recording

TIME = ToolSpec("get_current_time", "Returns the current local time and date.")
BYTES_PER_S = 32_000


def test_installed_model_file_has_the_pinned_hash() -> None:
    whisper.check_model_file(whisper.model_dir())  # raises when it differs


def test_missing_or_different_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(whisper.ModelFileError, match="missing"):
        whisper.check_model_file(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"not the model")
    with pytest.raises(whisper.ModelFileError, match=whisper.MODEL_SHA256):
        whisper.WhisperEngine(tmp_path)


@pytest.mark.parametrize(
    ("said", "phrase"),
    [
        ("what time is it now", "what time is it now"),
        ("thank you very much", "thank you very much"),
        ("tell me a joke", "tell me a joke"),
    ],
)
def test_espeak_phrases_are_heard_and_matched(tmp_path: Path, said: str, phrase: str) -> None:
    recognizer = WhisperRecognizer(grammar_phrases([TIME]))
    recognizer.start(recording(tmp_path, said, pad_s=0.3))
    result = recognizer.end(None)
    assert result.in_grammar
    assert result.phrase == phrase
    assert result.meaning == phrase
    assert set(normalize(result.text).split()) & set(phrase.split())


def test_open_speech_is_transcribed_not_forced_onto_a_phrase(tmp_path: Path) -> None:
    recognizer = WhisperRecognizer(grammar_phrases([TIME]))
    recognizer.start(recording(tmp_path, "what is the weather in paris", pad_s=0.3))
    result = recognizer.end(None)
    assert normalize(result.text) == "what is the weather in paris"
    assert result.phrase is None
    assert result.meaning == result.text


def test_partials_are_decoded_every_half_second_of_new_speech(tmp_path: Path) -> None:
    speech = recording(tmp_path, "what time is it now", pad_s=0.3)
    step = int(PARTIAL_EVERY_S * BYTES_PER_S)
    recognizer = WhisperRecognizer(grammar_phrases([TIME]))
    recognizer.start(speech[: step // 2])
    assert not recognizer.partial_due()
    recognizer.append(speech[step // 2 : step])
    assert recognizer.partial_due()
    recognizer.partial()
    assert not recognizer.partial_due()  # nothing new since
    recognizer.append(speech[step:])
    assert recognizer.partial_due()
    assert "time" in normalize(recognizer.partial())
    assert not recognizer.partial_due()
    assert recognizer.end(None).phrase == "what time is it now"


def test_repeated_sentence_is_cut_to_one() -> None:
    assert whisper.drop_repeats("Goodbye. Goodbye. Goodbye.") == "Goodbye."
    assert whisper.drop_repeats("who are you who are you") == "who are you"
    assert whisper.drop_repeats("search the web for cheap flights search the web") == (
        "search the web for cheap flights"
    )
    assert whisper.drop_repeats("bye bye now") == "bye bye now"
    assert whisper.drop_repeats("the cat the") == "the cat the"
    assert whisper.drop_repeats("") == ""
