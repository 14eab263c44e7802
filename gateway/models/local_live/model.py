"""`local-live`: the offline ADK live model (Whisper tiny.en in, espeak-ng out).

`local-live-pocketsphinx` selects the older pocketsphinx recognizer instead (see
`listeners.py` for when it is worth it).

A `BaseLlm` whose `connect()` yields a `LocalLiveConnection`; registered with ADK's
`LLMRegistry` (importing this package is enough), so any ADK agent can use it with
`model="local-live"`. It reads the agent's declared tools from the request to build
its recognition grammar and to decide which tool an utterance asks for.

Non-live `generate_content_async` answers the last user text (or the last tool
result) with the same reply logic, so the model also works with `run_async`.

ADK plugin: imports google.adk / google.genai and this package.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator

from google.adk.models import LlmCapabilities
from google.adk.models.base_llm import BaseLlm
from google.adk.models.base_llm_connection import BaseLlmConnection
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types

from gateway.models.local_live import recognizer as sphinx
from gateway.models.local_live import whisper
from gateway.models.local_live.connection import LocalLiveConnection
from gateway.models.local_live.endpointer import EndpointerConfig
from gateway.models.local_live.listeners import (
    CallRecognizer,
    SphinxRecognizer,
    WhisperRecognizer,
)
from gateway.models.local_live.pool import POOL
from gateway.models.local_live.replies import (
    CallTool,
    ToolSpec,
    decide,
    grammar_phrases,
    spoken_result,
)
from gateway.models.local_live.synthesizer import default_synthesizer

logger = logging.getLogger(__name__)

MODEL_NAME = "local-live"


def declared_tools(llm_request: LlmRequest) -> list[ToolSpec]:
    """The function declarations the agent gave the model, as `ToolSpec`s."""
    specs: list[ToolSpec] = []
    for tool in llm_request.config.tools or []:
        for declaration in getattr(tool, "function_declarations", None) or []:
            if declaration.name:
                specs.append(
                    ToolSpec(
                        declaration.name, declaration.description or "", _required(declaration)
                    )
                )
    return specs


def _required(declaration: types.FunctionDeclaration) -> tuple[str, ...]:
    if declaration.parameters is not None:
        return tuple(declaration.parameters.required or ())
    schema = declaration.parameters_json_schema
    if isinstance(schema, dict):
        return tuple(schema.get("required") or ())
    return ()


#: Recognizers by name (`LocalLiveModel.recognizer`, or the model name's suffix).
RECOGNIZERS = ("whisper", "pocketsphinx")
#: Half a second of quiet: the first decode also sets up CTranslate2's buffers.
_WARM_UP_PCM = bytes(16_000)


def warm_up(model: str = MODEL_NAME) -> float:
    """Load the recognizer `model` uses now (Whisper: load, check its hash and decode
    once); returns the seconds it took.

    Raises `whisper.ModelFileError` when the Whisper model is missing or not the
    pinned one."""
    started = time.perf_counter()
    if model.endswith("-pocketsphinx"):
        sphinx.warm_up()
    else:
        # Loaded in a decoding thread, so that the engine's own threads inherit its
        # lower priority (pool.py).
        POOL.call(lambda: whisper.engine().transcribe(_WARM_UP_PCM))
    return time.perf_counter() - started


class LocalLiveModel(BaseLlm):
    """The offline live model; `endpointer` tunes end-of-turn detection."""

    model: str = MODEL_NAME
    endpointer: EndpointerConfig = EndpointerConfig()
    #: "whisper" (default) or "pocketsphinx"; a model named `local-live-pocketsphinx`
    #: uses pocketsphinx whatever this says.
    recognizer: str = "whisper"

    @classmethod
    def supported_models(cls) -> list[str]:
        return [r"local-live(-.*)?"]

    @property
    def capabilities(self) -> LlmCapabilities:
        return LlmCapabilities(output_schema_and_tools=False)

    def connect(
        self, llm_request: LlmRequest
    ) -> contextlib.AbstractAsyncContextManager[BaseLlmConnection]:
        return self._connect(llm_request)

    @contextlib.asynccontextmanager
    async def _connect(self, llm_request: LlmRequest) -> AsyncIterator[BaseLlmConnection]:
        tools = declared_tools(llm_request)
        modalities = llm_request.live_connect_config.response_modalities or []
        synthesizer = default_synthesizer()  # first: it may fail, the recognizer is pooled
        listener = await POOL.run(self._make_recognizer, grammar_phrases(tools))
        connection = LocalLiveConnection(
            recognizer=listener,
            synthesizer=synthesizer,
            tools=tools,
            text_mode=types.Modality.TEXT in modalities,
            endpointer=self.endpointer,
        )
        connection.start()
        try:
            yield connection
        finally:
            await connection.close()

    def _make_recognizer(self, phrases: list[str]) -> CallRecognizer:
        kind = "pocketsphinx" if self.model.endswith("-pocketsphinx") else self.recognizer
        if kind == "pocketsphinx":
            return SphinxRecognizer(phrases)
        if kind != "whisper":
            raise ValueError(f"unknown recognizer {kind!r}: one of {', '.join(RECOGNIZERS)}")
        return WhisperRecognizer(phrases)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1] if llm_request.contents else None
        parts = (last.parts or []) if last else []
        results = [p.function_response for p in parts if p.function_response]
        if results:
            yield _text(spoken_result(results[-1].response))
            return
        reply = decide(" ".join(p.text for p in parts if p.text), declared_tools(llm_request))
        if isinstance(reply, CallTool):
            call = types.FunctionCall(id=f"local-live-{reply.name}", name=reply.name, args={})
            yield LlmResponse(
                content=types.Content(role="model", parts=[types.Part(function_call=call)])
            )
        else:
            yield _text(reply.text if reply else "")


def _text(text: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))
