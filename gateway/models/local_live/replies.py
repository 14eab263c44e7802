"""What the offline model says: tool matching and short answers, on plain text.

The agent's tools (name, description, required parameters) and a handful of
conversational intents decide the reply to an utterance: call a tool whose words
the caller used, or answer a greeting / thanks / goodbye / "who are you", or say
what was heard. Also the phrases the recognizer's grammar is made of, and how a
tool's result is turned into a sentence.

Pure functions on strings: imports the standard library and `recognizer.normalize`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.models.local_live.recognizer import normalize

#: Longest reply spoken or written, in characters (bounds synthesis and queues).
MAX_REPLY_CHARS = 400

GREETINGS = (
    "hello",
    "hello there",
    "hi",
    "hi there",
    "hey",
    "good morning",
    "good afternoon",
    "good evening",
)
GOODBYES = ("goodbye", "bye", "bye bye", "good night", "see you", "see you later")
STOPS = ("stop", "cancel", "never mind", "be quiet", "shut up")
THANKS = ("thank you", "thanks", "thank you very much", "thanks a lot")
ABOUT = ("who are you", "what can you do", "help", "what is your name", "how are you")
#: Everyday requests, so that they are recognized even when no tool's own words are used.
COMMON_REQUESTS = (
    "what time is it",
    "what time is it now",
    "what is the time",
    "what is the time now",
    "tell me the time",
    "what is the date",
    "what day is it",
    "what day is it today",
    "what is the weather",
    "tell me a joke",
    "search the web",
    "yes",
    "no",
)

#: Words that say nothing about which tool is meant.
STOPWORDS = frozenset(
    (
        "a",
        "an",
        "the",
        "is",
        "it",
        "its",
        "it's",
        "are",
        "am",
        "be",
        "to",
        "of",
        "for",
        "in",
        "on",
        "at",
        "by",
        "with",
        "and",
        "or",
        "me",
        "my",
        "i",
        "you",
        "your",
        "we",
        "us",
        "our",
        "what",
        "what's",
        "whats",
        "which",
        "who",
        "how",
        "when",
        "where",
        "please",
        "can",
        "could",
        "would",
        "will",
        "do",
        "does",
        "tell",
        "give",
        "show",
        "get",
        "set",
        "find",
        "let",
        "now",
        "today",
        "right",
        "just",
        "some",
        "any",
        "this",
        "that",
        "there",
        "here",
        "hey",
        "hi",
        "hello",
        "ok",
        "okay",
        "so",
        "current",
    )
)
#: Words that never select a tool even when a tool mentions them.
_GENERIC_TOOL_WORDS = frozenset(["returns", "return", "tool", "function", "the"])


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the agent declared: only tools without required parameters are called."""

    name: str
    description: str = ""
    required: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CallTool:
    """Call this tool (no arguments), then speak its result."""

    name: str


@dataclass(frozen=True, slots=True)
class Say:
    """Answer with this text."""

    text: str


Reply = CallTool | Say


def tool_words(name: str) -> str:
    """`get_current_time` / `getCurrentTime` -> "get current time"."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ")
    return normalize(spaced)


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def content_words(text: str) -> set[str]:
    """The words of `text` that can tell one request from another."""
    return {_stem(w) for w in normalize(text).split() if w not in STOPWORDS}


def grammar_phrases(tools: Iterable[ToolSpec]) -> list[str]:
    """Everything the recognizer should expect: intents, common requests, tool words."""
    phrases = [*GREETINGS, *GOODBYES, *STOPS, *THANKS, *ABOUT, *COMMON_REQUESTS]
    for tool in tools:
        words = tool_words(tool.name)
        phrases += [words, f"please {words}"]
        first_sentence = normalize(tool.description.split(".")[0])
        if 0 < len(first_sentence.split()) <= 12:
            phrases.append(first_sentence)
    return [p for p in (normalize(p) for p in phrases) if p]


#: Least `difflib` similarity (0-1, on letters) between a transcript and a phrase
#: for the phrase to stand for it. Measured on Whisper tiny.en's near misses of
#: espeak-ng phrases: "what time is it out" / "what time is it now" 0.84, "and you
#: very much" / "thank you very much" 0.89. Similar phrases ("who are you" / "how
#: are you" 0.91) are told apart because the most similar one wins.
PHRASE_MATCH_MIN = 0.8
#: A phrase stands for a transcript only with about as many words: "what is the
#: weather in paris" is not "what is the weather" (0.81 alike).
PHRASE_MAX_EXTRA_WORDS = 1


def closest_phrase(text: str, phrases: Iterable[str]) -> str | None:
    """The phrase (normalized) most like `text`, if at least `PHRASE_MATCH_MIN` alike."""
    said = normalize(text)
    if not said:
        return None
    best: tuple[float, str] | None = None
    words = len(said.split())
    for phrase in phrases:
        if abs(len(phrase.split()) - words) > PHRASE_MAX_EXTRA_WORDS:
            continue
        matcher = difflib.SequenceMatcher(None, said, phrase, autojunk=False)
        if matcher.real_quick_ratio() < PHRASE_MATCH_MIN:
            continue
        ratio = matcher.ratio()
        if ratio >= PHRASE_MATCH_MIN and (best is None or ratio > best[0]):
            best = (ratio, phrase)
    return best[1] if best else None


def match_tool(text: str, tools: Iterable[ToolSpec]) -> ToolSpec | None:
    """The callable tool sharing the most content words with `text` (ties: first)."""
    said = content_words(text)
    best: tuple[int, ToolSpec] | None = None
    for tool in tools:
        if tool.required:
            continue
        keywords = content_words(f"{tool_words(tool.name)} {tool.description}")
        score = len(said & (keywords - _GENERIC_TOOL_WORDS))
        if score > 0 and (best is None or score > best[0]):
            best = (score, tool)
    return best[1] if best else None


def decide(text: str, tools: Iterable[ToolSpec]) -> Reply | None:
    """The reply to an utterance or typed turn; None when nothing was said."""
    said = normalize(text)
    if not said:
        return None
    tools = list(tools)
    if said in GREETINGS:
        return Say("Hello! How can I help you?")
    if said in GOODBYES:
        return Say("Goodbye!")
    if said in STOPS:
        return Say("Okay.")
    if said in THANKS:
        return Say("You're welcome.")
    if said in ABOUT:
        return Say(about(tools))
    tool = match_tool(said, tools)
    if tool is not None:
        return CallTool(tool.name)
    return Say(clip(f"I heard: {said}."))


def about(tools: Iterable[ToolSpec]) -> str:
    names = [tool_words(t.name) for t in tools if not t.required]
    if not names:
        return "I am an offline voice assistant. I can hear you and answer briefly."
    return f"I am an offline voice assistant. I can {', '.join(names)}."


def spoken_result(response: Mapping[str, Any] | None) -> str:
    """A tool's result as one short sentence."""
    if not response:
        return "Done."
    if "error" in response:
        return "Sorry, that did not work."
    for key in ("report", "result", "text", "message", "answer", "output"):
        value = response.get(key)
        if isinstance(value, str | int | float) and str(value).strip():
            return clip(str(value))
    scalars = [
        f"{key.replace('_', ' ')} {value}"
        for key, value in response.items()
        if isinstance(value, str | int | float) and key != "status"
    ]
    return clip(", ".join(scalars) + ".") if scalars else "Done."


def clip(text: str) -> str:
    """At most `MAX_REPLY_CHARS`, cut at a word."""
    if len(text) <= MAX_REPLY_CHARS:
        return text
    return text[:MAX_REPLY_CHARS].rsplit(" ", 1)[0] + "..."
