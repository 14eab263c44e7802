"""The offline live model `local-live`; importing this package registers it with ADK.

Modules: `endpointer` (Silero VAD, end of turn), `whisper` (Whisper tiny.en, the
default recognizer), `recognizer` (pocketsphinx, the `local-live-pocketsphinx`
fallback), `listeners` (one call's recognizer, either), `pool` (the recognition
threads), `replies` (tool and phrase matching, short answers), `synthesizer`
(espeak-ng), `connection` (the `BaseLlmConnection`), `model` (the `BaseLlm`).
ADK plugin: may import google.adk.
"""

from __future__ import annotations

from google.adk.models.registry import LLMRegistry

from gateway.models.local_live.model import MODEL_NAME, RECOGNIZERS, LocalLiveModel, warm_up

LLMRegistry.register(LocalLiveModel)

__all__ = ["MODEL_NAME", "RECOGNIZERS", "LocalLiveModel", "warm_up"]
