"""Interop tests fail, never skip, when a peer's toolchain is missing."""

from __future__ import annotations

import pytest

from tests.interop import peers


@pytest.fixture(scope="session")
def gstreamer() -> None:
    """GStreamer's webrtcbin under the system Python (`scripts/bootstrap --test`)."""
    peers.require_gstreamer()


@pytest.fixture(scope="session")
def node_clients() -> None:
    """node with werift and node-datachannel in tests/interop/node (`npm ci`)."""
    peers.require_node_clients()
