"""Offline speech synthesis with espeak-ng, streamed as 24 kHz mono s16 PCM chunks.

Fast path: libespeak-ng in-process through ctypes, in synchronous mode, where the
library hands each ~60 ms buffer to a callback as soon as it is made; the first
chunk of a sentence is ready within ~10 ms. Fallback (no loadable library): the
`espeak-ng --stdout` command, read as it writes. espeak-ng speaks at 22050 Hz;
PyAV resamples to `AGENT_OUTPUT_RATE_HZ`.

libespeak-ng keeps global state and is not reentrant: one worker thread owns it
for the whole process, so syntheses of concurrent calls take turns. Stopping a
stream (barge-in) makes the callback abort the synthesis at its next buffer.

Imports ctypes, PyAV, numpy, the standard library and `gateway.audio.formats`/`pcm`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import logging
import shutil
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any, Protocol

from gateway.audio.formats import AGENT_OUTPUT_RATE_HZ, SAMPLE_BYTES
from gateway.audio.pcm import MonoResampler

logger = logging.getLogger(__name__)

VOICE = "en-us"
#: Words per minute (espeak-ng's default is 175).
RATE_WPM = 175
ESPEAK_RATE_HZ = 22_050
#: Milliseconds of audio per library callback: the streaming granularity.
BUFFER_MS = 60
#: How long stopping a synthesis may take before we stop waiting for the thread.
STOP_TIMEOUT_S = 2.0

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE_PARAMETER = 1
_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class SpeechSynthesizer(Protocol):
    """Text in, 24 kHz mono s16 PCM chunks out, as they are made."""

    def stream(self, text: str) -> AsyncGenerator[bytes, None]: ...


class EspeakLibrary:
    """libespeak-ng through ctypes; one process-wide worker thread owns the library."""

    _executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
    _init_lock = threading.Lock()
    _lib: ctypes.CDLL | None = None
    _sink: Callable[[bytes], bool] | None = None  # current synthesis (worker thread only)
    _callback: Any = None  # the ctypes callback; kept alive as long as the library

    @classmethod
    def load(cls) -> EspeakLibrary:
        """Raises OSError when the library is missing or fails to start."""
        with cls._init_lock:
            if cls._lib is None:
                path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
                lib = ctypes.CDLL(path)
                rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, None, 0)
                if rate != ESPEAK_RATE_HZ:
                    raise OSError(f"espeak-ng initialisation returned {rate}")
                cls._callback = _CALLBACK(cls._on_audio)
                lib.espeak_SetSynthCallback(cls._callback)
                lib.espeak_SetVoiceByName(VOICE.encode())
                lib.espeak_SetParameter(_ESPEAK_RATE_PARAMETER, RATE_WPM, 0)
                cls._lib = lib
        return cls()

    @classmethod
    def _on_audio(cls, wav: ctypes._Pointer[ctypes.c_short], samples: int, _: int) -> int:
        """Library callback (worker thread): hand the chunk on; 1 aborts synthesis."""
        sink = cls._sink
        if sink is None:
            return 1
        pcm = ctypes.string_at(wav, samples * SAMPLE_BYTES) if wav and samples > 0 else b""
        return 0 if sink(pcm) else 1

    def _synthesize(self, text: str, sink: Callable[[bytes], bool]) -> None:
        """Worker thread: synthesize `text`, calling `sink` per chunk until it says stop."""
        assert self._lib is not None
        data = text.encode()
        type(self)._sink = sink
        try:
            self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        finally:
            type(self)._sink = None

    async def stream(self, text: str) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        # Bounded by the text: a reply is at most MAX_REPLY_CHARS (~30 s of audio).
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        stop = threading.Event()
        resampler = MonoResampler(AGENT_OUTPUT_RATE_HZ)

        def sink(pcm: bytes) -> bool:
            if stop.is_set():
                return False
            out = resampler.pcm(pcm, ESPEAK_RATE_HZ)
            if out:
                loop.call_soon_threadsafe(chunks.put_nowait, out)
            return True

        def run() -> None:
            try:
                self._synthesize(text, sink)
                if not stop.is_set():
                    loop.call_soon_threadsafe(chunks.put_nowait, resampler.flush())
            finally:
                with contextlib.suppress(RuntimeError):  # loop already closed
                    loop.call_soon_threadsafe(chunks.put_nowait, None)

        job = loop.run_in_executor(self._executor, run)
        try:
            while (chunk := await chunks.get()) is not None:
                if chunk:
                    yield chunk
            await job
        finally:
            stop.set()
            await _settle(job)


class EspeakCommand:
    """The `espeak-ng` command line, read as it writes (slower to start: a process)."""

    def __init__(self, executable: str) -> None:
        self._executable = executable

    @classmethod
    def find(cls) -> EspeakCommand:
        path = shutil.which("espeak-ng")
        if path is None:
            raise OSError("espeak-ng is not installed (see scripts/bootstrap)")
        return cls(path)

    async def stream(self, text: str) -> AsyncGenerator[bytes, None]:
        process = await asyncio.create_subprocess_exec(
            self._executable,
            "-v",
            VOICE,
            "-s",
            str(RATE_WPM),
            "--stdout",
            text,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdout is not None
        resampler = MonoResampler(AGENT_OUTPUT_RATE_HZ)
        try:
            header = await process.stdout.readexactly(44)  # the WAV header
            del header
            while block := await process.stdout.read(BUFFER_MS * ESPEAK_RATE_HZ * 2 // 1000):
                if out := resampler.pcm(block[: len(block) // 2 * 2], ESPEAK_RATE_HZ):
                    yield out
            if tail := resampler.flush():
                yield tail
        except asyncio.IncompleteReadError:
            return
        finally:
            if process.returncode is None:
                process.kill()
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)


async def _settle(job: asyncio.Future[None]) -> None:
    """Wait (bounded) for a stopped synthesis thread; its errors are logged once."""
    try:
        await asyncio.wait_for(asyncio.shield(job), STOP_TIMEOUT_S)
    except TimeoutError:
        logger.warning("espeak-ng did not stop within %.1f s", STOP_TIMEOUT_S)
    except asyncio.CancelledError:
        raise
    except Exception:  # boundary: a failed synthesis must not take the call down twice
        logger.exception("speech synthesis failed")


def default_synthesizer() -> SpeechSynthesizer:
    """The in-process library when it loads, else the command line."""
    try:
        return EspeakLibrary.load()
    except OSError as exc:
        logger.warning("libespeak-ng unavailable (%s); using the espeak-ng command", exc)
        return EspeakCommand.find()
