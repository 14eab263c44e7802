"""The WebSocket edge: ADK's two streaming samples' protocols over one machinery.

- `GET /ws/{user_id}?is_audio=true|false`: the seed sample's transport. ADK's
  "custom audio streaming" sample talks to its agent over one WebSocket; this serves
  that protocol (`wire/seed_websocket.py`) exactly, so the sample's own browser
  client works against the gateway unchanged, and the web client can fall back to it
  where WebRTC cannot connect. Extensions, all optional: `session_id=` continues a
  conversation, `events=1` sends the data channel's JSON events.
- `GET /ws/{user_id}/{session_id}`: ADK's current streaming sample, "bidi-demo"
  (`wire/bidi_demo.py`, docs/bidi-demo.md): JSON text turns and binary PCM up, ADK
  `Event` JSON down; the path names the caller's conversation, created if missing.

A `WebSocketTransport` serves one protocol (`wire/socket_protocol.SocketProtocol`);
both do the same around it. Who asks and from which page are checked before the
upgrade (HTTP 400/401/403, no socket). One socket is one agent session, admitted
against the budget the calls share: it opens when the socket opens and is released
when the socket closes, whichever side closes it. Two owned tasks per socket move
client frames to the agent (uplink) and agent events to the client (downlink); when
either ends, the other is cancelled. A bad client frame gets an error reply and the
socket carries on. Errors that end the socket close it with code 4000 + the error's
HTTP status (4404 unknown session, 4429 too many, 4503 at capacity or agent
unavailable) after an error frame saying why; an agent failure closes 1011.
When the gateway drains (gateway/ops/drain.py), every open socket gets the
protocol's `going_away` frame, and the ones still open at the deadline are closed
with 1001 ("going away", RFC 6455 §7.4.1).

May import aiohttp and the project's agent seam, errors and protocols; never ADK
or aiortc.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from gateway.agent_api import AgentConnector, AgentError, AgentSession, ConversationCreator
from gateway.auth.http import EDGE_AUTH_KEY, granted_session, websocket_protocols
from gateway.auth.rate_limits import TokenBucket
from gateway.calls.admission import Admission
from gateway.calls.call import TEXT_TURN_BURST, CallLimits
from gateway.errors import GatewayError, RateLimited, error_reply
from gateway.metrics.counters import COUNTERS
from gateway.metrics.instruments import CALL_DURATION, CALLS_REFUSED
from gateway.signaling import error_response
from gateway.wire.bidi_demo import BIDI_DEMO_PROTOCOL
from gateway.wire.seed_websocket import SEED_PROTOCOL
from gateway.wire.socket_protocol import (
    ClientAudio,
    ClientItem,
    ClientText,
    FrameEncoder,
    SocketParams,
    SocketProtocol,
)

logger = logging.getLogger(__name__)

WS_PATH = "/ws/{user_id}"
BIDI_DEMO_PATH = "/ws/{user_id}/{session_id}"
#: Pings keep NAT and proxies open and notice a vanished client within ~2 pings.
HEARTBEAT_S = 20.0
#: Bound on closing a socket or waiting for its tasks to stop.
CLOSE_TIMEOUT_S = 5.0


class WebSocketTransport:
    """Serves one WebSocket protocol for one app, within the process's session budget."""

    def __init__(
        self,
        connector_key: web.AppKey[AgentConnector],
        *,
        admission: Admission,
        limits: CallLimits | None = None,
        protocol: SocketProtocol = SEED_PROTOCOL,
    ) -> None:
        self._connector_key = connector_key
        self._admission = admission
        self._limits = limits or CallLimits()
        self.protocol = protocol
        #: Client frames answered with an error (malformed, unsupported type, too fast).
        self.rejected_frames = 0
        #: Sockets with an agent session open now.
        self.open_sockets = 0
        #: Those sockets, their encoder and conversation (to tell them `going_away`).
        self._live: dict[web.WebSocketResponse, tuple[FrameEncoder, str]] = {}
        #: Sockets whose agent session opened (a failure before is a refused set-up).
        self._answered: set[str] = set()
        #: Loop time a draining gateway closes its sockets at (None: not draining).
        self._going_away_at: float | None = None

    async def going_away(self, deadline_s: float) -> int:
        """The gateway drains: tell every open socket it closes in `deadline_s`; how
        many were told (a socket opening now is told once its session is open)."""
        self._going_away_at = asyncio.get_running_loop().time() + deadline_s
        live = list(self._live.items())
        await asyncio.gather(*(self._tell_going_away(ws, *item) for ws, item in live))
        return len(live)

    async def close_all(self) -> None:
        """Close every open socket with 1001 (the drain's deadline has come)."""
        await asyncio.gather(
            *(_close(ws, WSCloseCode.GOING_AWAY, "gateway going away") for ws in list(self._live))
        )

    async def _tell_going_away(
        self, ws: web.WebSocketResponse, encoder: FrameEncoder, session_id: str
    ) -> None:
        if self._going_away_at is not None:
            left_s = max(0.0, self._going_away_at - asyncio.get_running_loop().time())
            await _send(ws, encoder.going_away(session_id, left_s))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Who asks and from which page are checked before the upgrade (an HTTP 401 or
        403, and no socket); everything after is told on the socket."""
        auth = request.app[EDGE_AUTH_KEY]
        try:
            params = self.protocol.parse_request(request.match_info, request.query)
            auth.check_origin(request)
            principal = await auth.principal(request, user_id=params.user_id, websocket=True)
            session_id = granted_session(principal, params.session_id)
        except GatewayError as exc:
            CALLS_REFUSED.labels(exc.code).inc()
            return error_response(exc)
        ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT_S,
            max_msg_size=self.protocol.max_frame_bytes,
            protocols=websocket_protocols(request),
        )
        await ws.prepare(request)
        socket_id = secrets.token_urlsafe(16)
        encoder = self.protocol.encoder(params)
        logger.info("ws %s: open (%s, %s)", socket_id, self.protocol.name, params.modality.value)
        try:
            if auth.limits is not None:
                await auth.limits.admit_setup(request.remote or "unknown", principal)
            ticket = self._admission.acquire(principal.user_id, exempt=principal.admin)
            try:
                params = dataclasses.replace(
                    params, user_id=principal.user_id, session_id=session_id
                )
                connector = request.app[self._connector_key]
                await self._serve(ws, connector, params, encoder, socket_id)
            finally:
                ticket.release()
        except Exception as exc:  # boundary: the socket ends with a reason, never the app
            reply = error_reply(exc)
            if socket_id not in self._answered and isinstance(exc, GatewayError):
                CALLS_REFUSED.labels(reply.code).inc()  # refused before its session opened
            if reply.unexpected:
                logger.exception("ws %s: failed", socket_id)
            else:
                logger.info("ws %s: refused: %s", socket_id, reply.code)
            await _send(ws, encoder.error(reply.code, reply.message, fatal=True))
            await _close(ws, reply.websocket_close_code, reply.code)
        finally:
            self._answered.discard(socket_id)
            await _close(ws, WSCloseCode.OK, "")
            logger.info("ws %s: closed", socket_id)
        return ws

    async def _serve(
        self,
        ws: web.WebSocketResponse,
        connector: AgentConnector,
        params: SocketParams,
        encoder: FrameEncoder,
        socket_id: str,
    ) -> None:
        self.open_sockets += 1
        try:
            if (
                self.protocol.creates_sessions
                and params.session_id is not None
                and isinstance(connector, ConversationCreator)
            ):
                await connector.ensure_conversation(
                    user_id=params.user_id, session_id=params.session_id
                )
            async with connector.open_session(
                user_id=params.user_id,
                session_id=params.session_id,
                modality=params.modality,
                call_id=f"ws/{socket_id}",
            ) as session:
                greeting = encoder.greeting(
                    socket_id=socket_id, session_id=session.session_id, modality=params.modality
                )
                if greeting is not None:
                    await ws.send_str(greeting)
                self._answered.add(socket_id)
                self._live[ws] = (encoder, session.session_id)
                await self._tell_going_away(ws, encoder, session.session_id)
                opened = time.monotonic()
                try:
                    async with asyncio.timeout(self._limits.max_call_s):
                        await self._pump(ws, session, encoder, socket_id)
                except TimeoutError:
                    COUNTERS.add("ended_max_length")
                    await _close(ws, WSCloseCode.OK, "maximum session length reached")
                finally:
                    CALL_DURATION.labels("websocket").observe(time.monotonic() - opened)
        finally:
            self._live.pop(ws, None)
            self.open_sockets -= 1

    async def _pump(
        self,
        ws: web.WebSocketResponse,
        session: AgentSession,
        encoder: FrameEncoder,
        socket_id: str,
    ) -> None:
        """Run uplink and downlink until either ends; the other is then cancelled."""
        async with asyncio.TaskGroup() as tasks:
            up = tasks.create_task(
                self._uplink(ws, session, encoder), name=f"ws/{socket_id}/uplink"
            )
            down = tasks.create_task(
                _downlink(ws, session, encoder), name=f"ws/{socket_id}/downlink"
            )
            up.add_done_callback(lambda _: down.cancel())
            down.add_done_callback(lambda _: up.cancel())

    async def _uplink(
        self, ws: web.WebSocketResponse, session: AgentSession, encoder: FrameEncoder
    ) -> None:
        """Client frames to the agent until the socket closes or stays silent for the
        idle limit; typed turns beyond the per-call rate get an error."""
        turns = TokenBucket(self._limits.text_turns_per_s, TEXT_TURN_BURST)
        loop = asyncio.get_running_loop()
        while not ws.closed:
            try:
                message = await ws.receive(timeout=self._limits.idle_s)
            except TimeoutError:
                COUNTERS.add("ended_idle")
                await _close(ws, WSCloseCode.OK, "idle")
                return
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if message.type is WSMsgType.ERROR:
                logger.info("ws: receive failed: %s", ws.exception())
                return
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                item = self._parse(message)
                if isinstance(item, ClientText) and not turns.take(loop.time()):
                    COUNTERS.add("text_turns_dropped")
                    raise RateLimited("too many typed turns; slow down", retry_after_s=1)
            except GatewayError as exc:
                await self._reject(ws, encoder, exc)
                continue
            if isinstance(item, ClientAudio):
                session.send_audio(item.pcm)
            else:
                session.send_text(item.text)

    def _parse(self, message: WSMessage) -> ClientItem:
        if message.type is WSMsgType.TEXT:
            return self.protocol.parse_text(message.data)
        return self.protocol.parse_binary(message.data)

    async def _reject(
        self, ws: web.WebSocketResponse, encoder: FrameEncoder, exc: GatewayError
    ) -> None:
        self.rejected_frames += 1
        logger.debug("ws: rejected a frame: %s", exc.message)
        await _send(ws, encoder.error(exc.code, exc.message, fatal=False))


async def _downlink(
    ws: web.WebSocketResponse, session: AgentSession, encoder: FrameEncoder
) -> None:
    """Agent events to the client until the session ends or fails."""
    async for event in session.events():
        frame = encoder.encode(event)
        if frame is not None:
            await _send(ws, frame)
        if ws.closed:
            return
        if isinstance(event, AgentError) and event.fatal:
            await _close(ws, WSCloseCode.INTERNAL_ERROR, event.code)
            return
    await _close(ws, WSCloseCode.OK, "agent ended the session")


async def _send(ws: web.WebSocketResponse, frame: str) -> None:
    """Send unless the socket is already closing (the client may be gone)."""
    if ws.closed:
        return
    try:
        await ws.send_str(frame)
    except ConnectionError:
        logger.debug("ws: client gone before a send")


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    if ws.closed:
        return
    try:
        await asyncio.wait_for(ws.close(code=code, message=reason.encode()[:120]), CLOSE_TIMEOUT_S)
    except (TimeoutError, ConnectionError):
        logger.debug("ws: close did not complete")


TRANSPORT_KEY = web.AppKey("websocket_transport", WebSocketTransport)
BIDI_DEMO_TRANSPORT_KEY = web.AppKey("bidi_demo_transport", WebSocketTransport)


def add_websocket_routes(
    app: web.Application,
    connector_key: web.AppKey[AgentConnector],
    *,
    admission: Admission,
    limits: CallLimits | None = None,
) -> WebSocketTransport:
    """Serve the seed's `/ws/{user_id}` on `app` with the agent under `connector_key`,
    within the session budget `admission` (shared with the calls)."""
    transport = WebSocketTransport(connector_key, admission=admission, limits=limits)
    app[TRANSPORT_KEY] = transport
    app.router.add_get(WS_PATH, transport.handle)
    return transport


def add_bidi_demo_routes(
    app: web.Application,
    connector_key: web.AppKey[AgentConnector],
    *,
    admission: Admission,
    limits: CallLimits | None = None,
) -> WebSocketTransport:
    """Serve ADK's bidi-demo `/ws/{user_id}/{session_id}` on `app`, as
    `add_websocket_routes` serves the seed's (same agent, budget and limits)."""
    transport = WebSocketTransport(
        connector_key, admission=admission, limits=limits, protocol=BIDI_DEMO_PROTOCOL
    )
    app[BIDI_DEMO_TRANSPORT_KEY] = transport
    app.router.add_get(BIDI_DEMO_PATH, transport.handle)
    return transport
