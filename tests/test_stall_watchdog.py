"""The stall watchdog's rules, on explicit times (no model, no clock).

Pins down:
- a caller turn (spoken or typed) or a tool result with no model output for the
  timeout is a stall (`no_reply`, `after_tool`); output in time is not;
- a completed turn with no content where output was due is an `empty_turn` at once;
- a reply that stops without completing is `mid_reply`, counted from when the caller
  has heard all the audio received (audio comes faster than real time);
- a running tool or a SILENT tool result expects nothing; an interruption ends the
  expectation;
- recovery goes nudge -> rotate -> give up, one step per step timeout, and output
  at any step ends it (counted as recovered).
"""

from __future__ import annotations

import pytest

from gateway.adk.stall_watchdog import StallKind, StallWatchdog, Step

TIMEOUT, STEP = 8.0, 4.0


@pytest.fixture
def dog() -> StallWatchdog:
    return StallWatchdog(TIMEOUT, STEP)


def test_nothing_expected_nothing_due(dog: StallWatchdog) -> None:
    assert dog.deadline() is None
    assert dog.due(1000.0) is None


@pytest.mark.parametrize("typed", [False, True])
def test_a_turn_with_no_reply_is_a_stall(dog: StallWatchdog, typed: bool) -> None:
    if typed:
        dog.user_text_sent(10.0)
    else:
        dog.user_turn_ended(10.0)
    assert dog.deadline() == 18.0
    assert dog.due(17.9) is None
    recovery = dog.due(18.0)
    assert recovery is not None
    assert (recovery.step, recovery.kind, recovery.new_stall) == (
        Step.NUDGE,
        StallKind.NO_REPLY,
        True,
    )


def test_a_reply_in_time_and_completed_is_no_stall(dog: StallWatchdog) -> None:
    dog.user_turn_ended(10.0)
    dog.output(11.0, audio_s=2.0)
    dog.turn_ended(11.5)
    assert dog.deadline() is None
    assert dog.due(100.0) is None


def test_a_transcription_after_the_reply_started_expects_nothing(dog: StallWatchdog) -> None:
    """3.x sends the final input transcription with the reply's first audio: ADK yields
    the audio first."""
    dog.output(10.0, audio_s=0.04)
    dog.user_turn_ended(10.0)
    dog.turn_ended(10.5)
    assert dog.deadline() is None


def test_an_empty_completed_turn_is_a_stall_at_once(dog: StallWatchdog) -> None:
    dog.user_turn_ended(10.0)
    dog.turn_ended(10.3)
    recovery = dog.due(10.3)
    assert recovery is not None
    assert (recovery.step, recovery.kind, recovery.new_stall) == (
        Step.NUDGE,
        StallKind.EMPTY_TURN,
        True,
    )


def test_a_reply_that_stops_counts_from_when_its_audio_is_heard(dog: StallWatchdog) -> None:
    dog.user_turn_ended(10.0)
    dog.output(10.5, audio_s=5.0)  # 5 s of speech arrives at once
    assert dog.deadline() == 10.5 + 5.0 + TIMEOUT
    assert dog.due(20.0) is None  # the caller is still hearing it, or just stopped
    recovery = dog.due(23.5)
    assert recovery is not None
    assert recovery.kind is StallKind.MID_REPLY


def test_tools(dog: StallWatchdog) -> None:
    dog.user_turn_ended(10.0)
    dog.output(10.2)  # the model calls a tool (and may say "let me check")
    dog.tool_called()
    dog.turn_ended(10.4)
    assert dog.deadline() is None  # a tool takes as long as it takes
    dog.tool_result_sent(40.0, silent=True)
    assert dog.deadline() is None  # SILENT: no reaction due
    dog.tool_called()
    dog.tool_result_sent(50.0, silent=False)
    recovery = dog.due(58.0)
    assert recovery is not None
    assert recovery.kind is StallKind.AFTER_TOOL


def test_an_interruption_ends_the_expectation(dog: StallWatchdog) -> None:
    dog.user_turn_ended(10.0)
    dog.turn_ended(10.1, interrupted=True)
    assert dog.deadline() is None


def test_recovery_nudges_then_rotates_then_gives_up(dog: StallWatchdog) -> None:
    dog.user_turn_ended(0.0)
    steps = []
    now = 0.0
    for _ in range(3):
        deadline = dog.deadline()
        assert deadline is not None
        now = deadline
        recovery = dog.due(now)
        assert recovery is not None
        steps.append((recovery.step, recovery.new_stall))
    assert steps == [(Step.NUDGE, True), (Step.ROTATE, False), (Step.GIVE_UP, False)]
    assert dog.deadline() is None
    assert dog.recovered == 0


def test_output_after_a_nudge_is_a_recovery(dog: StallWatchdog) -> None:
    dog.user_turn_ended(0.0)
    assert dog.due(TIMEOUT) is not None  # nudged
    dog.output(TIMEOUT + 1.0, audio_s=1.0)
    dog.turn_ended(TIMEOUT + 1.5)
    assert dog.recovered == 1
    assert dog.deadline() is None


def test_a_tool_result_during_the_models_filler_is_due_after_it(dog: StallWatchdog) -> None:
    """NON_BLOCKING: the model says "let me check" while the tool runs; the result comes
    back mid-filler (WHEN_IDLE): the filler is not the answer."""
    dog.user_turn_ended(10.0)
    dog.output(10.1)
    dog.tool_called()
    dog.output(10.2, audio_s=1.0)  # "let me check"
    dog.tool_result_sent(10.3, silent=False)
    dog.output(10.4, audio_s=0.04)  # still the filler
    assert dog.deadline() == 10.2 + 1.0 + 0.04 + TIMEOUT  # the filler itself may still stall
    dog.turn_ended(11.5)  # the filler is done: now the result is due
    assert dog.deadline() == 11.5 + TIMEOUT
    recovery = dog.due(11.5 + TIMEOUT)
    assert recovery is not None
    assert recovery.kind is StallKind.AFTER_TOOL
