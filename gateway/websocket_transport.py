"""`GET /ws/{user_id}?is_audio=true|false`: the seed sample's WebSocket transport.

ADK's "custom audio streaming" sample talks to its agent over one WebSocket; this
module serves that protocol (`wire/seed_websocket.py`) exactly, so the sample's own
browser client works against the gateway unchanged, and the web client can fall
back to it where WebRTC cannot connect. Extensions, all optional: `session_id=`
continues a conversation, `events=1` sends the data channel's JSON events.

One socket is one agent session: it opens when the socket opens and is released
when the socket closes, whichever side closes it. Two owned tasks per socket move
client frames to the agent (uplink) and agent events to the client (downlink);
when either ends, the other is cancelled. A bad client frame gets an `error`
reply and the socket carries on. Errors that end the socket close it with code
4000 + the error's HTTP status (4404 unknown session, 4503 at capacity or agent
unavailable) after an `error` message saying why; an agent failure closes 1011.

May import aiohttp and the project's agent seam, errors and protocols; never ADK
or aiortc.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.agent_api import AgentConnector, AgentError, AgentSession
from gateway.errors import AtCapacity, GatewayError, InvalidMessage, error_reply
from gateway.signaling import error_response
from gateway.wire.data_channel import error_message, session_message
from gateway.wire.seed_websocket import (
    MAX_FRAME_BYTES,
    ClientAudio,
    SeedEncoder,
    SocketParams,
    parse_client_frame,
    parse_params,
)

logger = logging.getLogger(__name__)

WS_PATH = "/ws/{user_id}"
#: Pings keep NAT and proxies open and notice a vanished client within ~2 pings.
HEARTBEAT_S = 20.0
#: Bound on closing a socket or waiting for its tasks to stop.
CLOSE_TIMEOUT_S = 5.0
#: Default bound on open sockets (each holds a live agent session).
DEFAULT_MAX_SOCKETS = 20


class WebSocketTransport:
    """Serves `/ws/{user_id}` for one app; counts its open sockets."""

    def __init__(
        self,
        connector_key: web.AppKey[AgentConnector],
        *,
        max_sockets: int = DEFAULT_MAX_SOCKETS,
        retry_after_s: int = 5,
    ) -> None:
        self._connector_key = connector_key
        self._max_sockets = max_sockets
        self._retry_after_s = retry_after_s
        self.open_sockets = 0
        #: Client frames answered with an `error` (malformed, unsupported type).
        self.rejected_frames = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            params = parse_params(request.match_info["user_id"], dict(request.query))
        except GatewayError as exc:
            return error_response(exc)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME_BYTES)
        await ws.prepare(request)
        socket_id = secrets.token_urlsafe(16)
        logger.info("ws %s: open (%s)", socket_id, params.modality.value)
        try:
            await self._serve(ws, request.app[self._connector_key], params, socket_id)
        except Exception as exc:  # boundary: the socket ends with a reason, never the app
            reply = error_reply(exc)
            if reply.unexpected:
                logger.exception("ws %s: failed", socket_id)
            else:
                logger.info("ws %s: refused: %s", socket_id, reply.code)
            await _send(ws, error_message(reply.code, reply.message, fatal=True))
            await _close(ws, reply.websocket_close_code, reply.code)
        finally:
            await _close(ws, WSCloseCode.OK, "")
            logger.info("ws %s: closed", socket_id)
        return ws

    async def _serve(
        self,
        ws: web.WebSocketResponse,
        connector: AgentConnector,
        params: SocketParams,
        socket_id: str,
    ) -> None:
        if self.open_sockets >= self._max_sockets:
            raise AtCapacity(
                "too many open sessions; retry later", retry_after_s=self._retry_after_s
            )
        self.open_sockets += 1
        try:
            async with connector.open_session(
                user_id=params.user_id,
                session_id=params.session_id,
                modality=params.modality,
                call_id=f"ws/{socket_id}",
            ) as session:
                if params.events:
                    mode = params.modality.value
                    await ws.send_str(session_message(socket_id, session.session_id, mode))
                await self._pump(ws, session, SeedEncoder(events=params.events), socket_id)
        finally:
            self.open_sockets -= 1

    async def _pump(
        self,
        ws: web.WebSocketResponse,
        session: AgentSession,
        encoder: SeedEncoder,
        socket_id: str,
    ) -> None:
        """Run uplink and downlink until either ends; the other is then cancelled."""
        async with asyncio.TaskGroup() as tasks:
            up = tasks.create_task(self._uplink(ws, session), name=f"ws/{socket_id}/uplink")
            down = tasks.create_task(
                _downlink(ws, session, encoder), name=f"ws/{socket_id}/downlink"
            )
            up.add_done_callback(lambda _: down.cancel())
            down.add_done_callback(lambda _: up.cancel())

    async def _uplink(self, ws: web.WebSocketResponse, session: AgentSession) -> None:
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                try:
                    item = parse_client_frame(message.data)
                except GatewayError as exc:
                    await self._reject(ws, exc)
                    continue
                if isinstance(item, ClientAudio):
                    session.send_audio(item.pcm)
                else:
                    session.send_text(item.text)
            elif message.type is WSMsgType.BINARY:
                await self._reject(ws, InvalidMessage("binary frames are not part of the protocol"))
            elif message.type is WSMsgType.ERROR:
                logger.info("ws: receive failed: %s", ws.exception())
                return

    async def _reject(self, ws: web.WebSocketResponse, exc: GatewayError) -> None:
        self.rejected_frames += 1
        logger.debug("ws: rejected a frame: %s", exc.message)
        await _send(ws, error_message(exc.code, exc.message))


async def _downlink(ws: web.WebSocketResponse, session: AgentSession, encoder: SeedEncoder) -> None:
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


def add_websocket_routes(
    app: web.Application,
    connector_key: web.AppKey[AgentConnector],
    *,
    max_sockets: int = DEFAULT_MAX_SOCKETS,
) -> WebSocketTransport:
    """Serve the seed's `/ws/{user_id}` on `app` with the agent under `connector_key`."""
    transport = WebSocketTransport(connector_key, max_sockets=max_sockets)
    app[TRANSPORT_KEY] = transport
    app.router.add_get(WS_PATH, transport.handle)
    return transport
