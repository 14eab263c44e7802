"""The fleet's settings and its registry, against a Redis of the test's own.

Pins down:
- `--public-url`: derived from host, port and TLS when unset (IPv6 bracketed, the
  machine's name for a wildcard host), a trailing slash dropped, anything but a
  base URL refused; `--fleet-max-calls` needs `--redis-url`; `--cross-instance`
  takes `proxy` or `redirect` only;
- the registry: an instance's heartbeat maps its calls to its public URL for the
  others, and counts its calls in the fleet's total; a call that ended is
  unmapped at the next heartbeat, a hung-up one at once; leaving removes the
  instance and its calls;
- Redis down: no exception escapes a heartbeat or a registration, lookups raise
  `RegistryDown`, the fleet total is unknown, the outage is logged once and
  counted once however many operations fail; Redis back (empty): the next
  heartbeat registers the calls again and says so in the log.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from gateway.cluster.fleet_registry import FleetRegistry, RegistryDown
from gateway.config import ConfigError, load_settings
from gateway.metrics.counters import COUNTER_NAMES, COUNTERS
from tests.support.redis_server import redis_server


def test_public_url_is_derived_from_how_the_instance_serves() -> None:
    assert load_settings({}, environ={}).advertised_url == "http://127.0.0.1:8080"
    assert load_settings({"port": 9000, "host": "::1"}, environ={}).advertised_url == (
        "http://[::1]:9000"
    )
    tls = {"certfile": "/etc/ssl/gw.pem", "keyfile": "/etc/ssl/gw.key", "host": "localhost"}
    assert load_settings(tls, environ={}).advertised_url == "https://localhost:8080"
    wildcard = load_settings({"host": "0.0.0.0", "no_auth": True}, environ={})
    assert wildcard.advertised_url == f"http://{socket.getfqdn()}:8080"
    given = load_settings({}, environ={"GATEWAY_PUBLIC_URL": "https://gw-3.example/"})
    assert given.advertised_url == "https://gw-3.example"


@pytest.mark.parametrize(
    "overrides",
    [
        {"public_url": "https://gw.example/calls"},
        {"public_url": "gw.example:8080"},
        {"public_url": "https://gw.example?x=1"},
        {"fleet_max_calls": 10},
        {"cross_instance": "teleport"},
    ],
)
def test_fleet_settings_that_cannot_work_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_settings(overrides, environ={})


def counter(name: str) -> int:
    return COUNTERS.values()[COUNTER_NAMES.index(name)]


class Instance:
    """A registry with calls a test sets."""

    def __init__(self, redis_url: str, url: str) -> None:
        self.calls: list[str] = []
        self.registry = FleetRegistry(
            redis_url,
            url=url,
            capacity=10,
            prefix="test:fleet:",
            local_call_ids=lambda: list(self.calls),
            instance_calls=lambda: len(self.calls),
        )


async def test_instances_see_each_others_calls(tmp_path: Path) -> None:
    async with redis_server(tmp_path) as redis:
        a = Instance(redis.url, "http://a.example:8080")
        b = Instance(redis.url, "http://b.example:8080")
        try:
            a.calls = ["call-1", "call-2"]
            await a.registry.heartbeat()
            await b.registry.heartbeat()
            assert await b.registry.owner("call-1") == "http://a.example:8080"
            assert await b.registry.owner("nobody") is None
            assert b.registry.fleet_calls(own_calls=1) == 3

            a.calls = ["call-2"]  # call-1 ended by itself
            await a.registry.heartbeat()
            assert await b.registry.owner("call-1") is None
            await a.registry.unregister_call("call-2")  # hung up
            assert await b.registry.owner("call-2") is None

            a.calls = ["call-3"]
            await a.registry.register_call("call-3")
            assert await b.registry.owner("call-3") == "http://a.example:8080"
            await a.registry.leave()
            await b.registry.heartbeat()
            assert await b.registry.owner("call-3") is None
            assert b.registry.fleet_calls(own_calls=0) == 0
        finally:
            await a.registry.close()
            await b.registry.close()


async def test_an_outage_is_survived_logged_once_and_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.cluster.fleet_registry")
    async with redis_server(tmp_path) as redis:
        a = Instance(redis.url, "http://a.example:8080")
        b = Instance(redis.url, "http://b.example:8080")
        try:
            a.calls = ["call-1"]
            await a.registry.heartbeat()
            outages = counter("registry_outages")

            await redis.stop()
            await a.registry.heartbeat()
            await a.registry.register_call("call-2")
            await a.registry.unregister_call("call-2")
            await a.registry.heartbeat()
            with pytest.raises(RegistryDown):
                await a.registry.owner("call-1")
            assert not a.registry.available
            assert a.registry.fleet_calls(own_calls=1) is None
            assert counter("registry_outages") == outages + 1
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1
            assert "unavailable" in warnings[0].getMessage()

            await redis.start()  # empty: what was registered is gone
            await a.registry.heartbeat()
            assert a.registry.available
            assert await b.registry.owner("call-1") == "http://a.example:8080"
            assert any("answers again" in r.getMessage() for r in caplog.records)
        finally:
            await a.registry.close()
            await b.registry.close()
