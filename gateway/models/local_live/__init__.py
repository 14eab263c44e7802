"""The offline live model `local-live`; importing this package registers it with ADK.

Modules: `endpointer` (voice activity, end of turn), `recognizer` (pocketsphinx),
`replies` (tool matching and short answers), `synthesizer` (espeak-ng), `connection`
(the `BaseLlmConnection`), `model` (the `BaseLlm`). ADK plugin: may import google.adk.
"""

from __future__ import annotations

from google.adk.models.registry import LLMRegistry

from gateway.models.local_live.model import MODEL_NAME, LocalLiveModel, warm_up

LLMRegistry.register(LocalLiveModel)

__all__ = ["MODEL_NAME", "LocalLiveModel", "warm_up"]
