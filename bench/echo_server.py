"""A minimal aiortc echo server: the "plain aiortc" baseline of the capacity sweep.

What a plain aiortc app does, nothing more: `POST /calls` takes an SDP offer (the
gateway's WHIP shape, so the same load tester calls both), the caller's audio track
is sent straight back through `MediaRelay` (aiortc's jitter buffer, decoder thread,
re-encoding, audio level computed on every frame), `DELETE /calls/{id}` hangs up.
`GET /stats` reports the process's CPU and memory the way the gateway does
(`gateway.metrics.process_stats`), so the load tester measures both servers alike.

    python -m bench.echo_server --port 8081 [--ice-addresses 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from gateway.metrics.process_stats import process_stats
from gateway.rtc import ice

PEERS = web.AppKey("peers", dict[str, RTCPeerConnection])
RELAY = web.AppKey("relay", MediaRelay)
CLOSE_TIMEOUT_S = 5.0


async def offer(request: web.Request) -> web.Response:
    peers, relay = request.app[PEERS], request.app[RELAY]
    pc = RTCPeerConnection(ice.rtc_configuration([]))
    call_id = secrets.token_urlsafe(16)
    peers[call_id] = pc

    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            pc.addTrack(relay.subscribe(track))

    def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            peers.pop(call_id, None)

    pc.on("track", on_track)
    pc.on("connectionstatechange", on_state)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # the baseline is not hardened; a bad offer is a 400
        peers.pop(call_id, None)
        await pc.close()
        raise web.HTTPBadRequest(text=str(exc)) from exc
    return web.Response(
        status=201,
        text=pc.localDescription.sdp,
        content_type="application/sdp",
        headers={"Location": f"/calls/{call_id}"},
    )


async def hang_up(request: web.Request) -> web.Response:
    pc = request.app[PEERS].pop(request.match_info["call_id"], None)
    if pc is None:
        raise web.HTTPNotFound()
    await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT_S)
    return web.Response(status=204)


async def stats(request: web.Request) -> web.Response:
    reading = process_stats(len(request.app[PEERS]))
    return web.json_response({**reading.as_json(), "workers": [reading.as_json()]})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "calls": len(request.app[PEERS])})


async def close_peers(app: web.Application) -> None:
    peers = list(app[PEERS].values())
    app[PEERS].clear()
    await asyncio.gather(*(asyncio.wait_for(pc.close(), CLOSE_TIMEOUT_S) for pc in peers))


def create_app() -> web.Application:
    app = web.Application()
    app[PEERS] = {}
    app[RELAY] = MediaRelay()
    app.router.add_post("/calls", offer)
    app.router.add_delete("/calls/{call_id}", hang_up)
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", healthz)
    app.on_shutdown.append(close_peers)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--ice-addresses", default="127.0.0.1",
                        help="local addresses ICE may use, comma-separated")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    ice.restrict_host_addresses([a for a in args.ice_addresses.split(",") if a])
    web.run_app(create_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
