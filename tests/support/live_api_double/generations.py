"""What each Live model generation the double plays accepts in its setup.

The service of late 2026 serves two live models (ai.google.dev model pages, checked
2026-12-06): `gemini-3.8-live` (stable since 2026-09-15) and the legacy preview
`gemini-3.1-flash-live-preview`. Every 2.0 / 2.5 preview live id is shut down and so
refused like any unknown model (close 1008, see `wire.unknown_model_close`).

A setup field the model does not accept is refused with close 1007 "Request contains
an invalid argument." (`wire.INVALID_ARGUMENT_CLOSE`), even when the field is set to
false (python-genai #865). The exact 3.8 texts are not published; the code and
reason are those reported for 3.1 (adk-python #5075). Rules, by the name the double
records in `LiveApiDouble.refused_settings`:

- both: `responseModalities:TEXT` (AUDIO only; text comes from transcription),
  `enableAffectiveDialog` (present at all);
- 3.8: `thinkingConfig` (any; the model reasons with no knob), `proactiveAudio:false`
  (proactive audio is always on; `true` or an empty `proactivity` is accepted);
- 3.1: `proactivity` (any), `thinkingBudget` (3.1 takes `thinkingLevel`, which is
  accepted), `behavior:NON_BLOCKING` (3.1 calls tools synchronously only).

Key names are those google-genai 2.34 sends, captured from the real client by the
tests: `generationConfig.{responseModalities, thinkingConfig, enableAffectiveDialog}`,
`thinkingConfig.{thinking_budget, thinking_level}` (snake_case inside),
`proactivity.proactive_audio` (snake_case), `tools[].functionDeclarations[].behavior`.
Both spellings are accepted everywhere (`wire.field`).

Imports only the standard library and the double's `wire` module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from tests.support.live_api_double.wire import field, has

Generation = Literal["3.8", "3.1"]
ToolBehavior = Literal["BLOCKING", "NON_BLOCKING"]

#: The live model id each generation serves (its default `known_models`).
GENERATION_MODELS: Mapping[Generation, str] = {
    "3.8": "gemini-3.8-live",
    "3.1": "gemini-3.1-flash-live-preview",
}
#: A function declaration without `behavior`: 3.8 made asynchronous calls the default
#: ("Asynchronous execution ... is now the default"); 3.1 has synchronous calls only.
DEFAULT_TOOL_BEHAVIOR: Mapping[Generation, ToolBehavior] = {
    "3.8": "NON_BLOCKING",
    "3.1": "BLOCKING",
}

Setup = Mapping[str, Any]


def _generation_config(setup: Setup) -> Mapping[str, Any]:
    return field(setup, "generationConfig") or {}


def _text_modality(setup: Setup) -> bool:
    modalities = field(_generation_config(setup), "responseModalities") or []
    return any(str(m).upper() == "TEXT" for m in modalities)


def _affective_dialog(setup: Setup) -> bool:
    # The field is refused wherever it is put (python-genai #865, cause 1).
    return has(_generation_config(setup), "enableAffectiveDialog") or has(
        setup, "enableAffectiveDialog"
    )


def _thinking_config(setup: Setup) -> Mapping[str, Any] | None:
    config: Mapping[str, Any] | None = field(_generation_config(setup), "thinkingConfig")
    return config if config is not None else field(setup, "thinkingConfig")


def _proactive_audio_off(setup: Setup) -> bool:
    return field(field(setup, "proactivity") or {}, "proactiveAudio") is False


def _thinking_budget(setup: Setup) -> bool:
    return has(_thinking_config(setup) or {}, "thinkingBudget")


def function_declarations(setup: Setup) -> list[Mapping[str, Any]]:
    """Every function declaration of every tool in the setup."""
    return [
        d for tool in field(setup, "tools") or [] for d in field(tool, "functionDeclarations") or []
    ]


def _non_blocking_tool(setup: Setup) -> bool:
    return any(field(d, "behavior") == "NON_BLOCKING" for d in function_declarations(setup))


Rule = tuple[str, Callable[[Setup], bool]]
_COMMON: tuple[Rule, ...] = (
    ("responseModalities:TEXT", _text_modality),
    ("enableAffectiveDialog", _affective_dialog),
)
_RULES: Mapping[Generation, tuple[Rule, ...]] = {
    "3.8": (
        *_COMMON,
        ("thinkingConfig", lambda s: _thinking_config(s) is not None),
        ("proactiveAudio:false", _proactive_audio_off),
    ),
    "3.1": (
        *_COMMON,
        ("proactivity", lambda s: has(s, "proactivity")),
        ("thinkingBudget", _thinking_budget),
        ("behavior:NON_BLOCKING", _non_blocking_tool),
    ),
}


def refused_setting(generation: Generation, setup: Setup) -> str | None:
    """The first rule of `generation` that `setup` breaks, or None if it is accepted."""
    return next((name for name, broken in _RULES[generation] if broken(setup)), None)


def thinking_level(setup: Setup) -> str | None:
    """`thinkingConfig.thinkingLevel` as sent (e.g. "LOW"); None means the default."""
    level = field(_thinking_config(setup) or {}, "thinkingLevel")
    return None if level is None else str(level)


def declared_behavior(generation: Generation, setup: Setup, name: str) -> ToolBehavior:
    """How the model calls tool `name`: its declared behavior, else the default."""
    for declaration in function_declarations(setup):
        if field(declaration, "name") == name and field(declaration, "behavior") in (
            "BLOCKING",
            "NON_BLOCKING",
        ):
            behavior: ToolBehavior = field(declaration, "behavior")
            return behavior
    return DEFAULT_TOOL_BEHAVIOR[generation]
