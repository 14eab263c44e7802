"""Shared fixtures: loopback-only ICE, an in-process gateway, and a leak check.

The leak check fails any test that leaves a live peer connection, an unfinished
asyncio task or more open file descriptors (sockets) than it started with.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCConfiguration, RTCPeerConnection

from gateway.agent_api import AgentConnector
from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.rtc import ice
from tests.support.peers import PeerPair

LEAK_GRACE_S = 3.0


@pytest.fixture(autouse=True, scope="session")
def loopback_ice() -> Iterator[None]:
    """Test traffic stays on loopback: ICE gathers host candidates on 127.0.0.1 only."""
    ice.restrict_host_addresses(["127.0.0.1"])
    yield
    ice.restrict_host_addresses([])


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _live_peer_connections() -> list[RTCPeerConnection]:
    gc.collect()
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"
    ]


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    """Fail the test if it leaks tasks, peer connections or file descriptors."""
    fds_before = _open_fds()
    loop = asyncio.get_running_loop()
    unhandled: list[str] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context["message"]))
    yield
    me = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + LEAK_GRACE_S
    while True:
        tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        pcs = _live_peer_connections()
        fds = _open_fds() - fds_before
        if not (tasks or pcs or fds) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert not tasks, f"leaked tasks: {[t.get_name() for t in tasks]}"
    assert not pcs, f"leaked {len(pcs)} peer connection(s)"
    assert not fds, f"leaked {len(fds)} file descriptor(s)"
    gc.collect()  # "Task exception was never retrieved" is reported when a task is freed
    loop.set_exception_handler(None)
    assert not unhandled, f"unhandled errors in the event loop: {unhandled}"


@pytest.fixture
async def peers() -> AsyncIterator[PeerPair]:
    """A caller and a callee peer connection (no ICE servers), closed after the test."""
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    callee = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        yield caller, callee
    finally:
        await asyncio.wait_for(caller.close(), 5)
        await asyncio.wait_for(callee.close(), 5)


def gateway_settings(**overrides: object) -> Settings:
    return load_settings({"ice_addresses": "127.0.0.1", **overrides}, environ={})


GatewayFactory = Callable[..., "asyncio.Future[TestClient[web.Request, web.Application]]"]


@pytest.fixture
async def start_gateway() -> AsyncIterator[Callable[..., object]]:
    """Start an in-process gateway around a connector; returns its HTTP client."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(
        connector: AgentConnector, **overrides: object
    ) -> TestClient[web.Request, web.Application]:
        app = create_app(gateway_settings(**overrides), connector)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
