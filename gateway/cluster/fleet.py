"""Instances that know each other through Redis (`--redis-url`): the composition.

`add_fleet` makes one gateway process a member of the fleet: its `FleetRegistry`
heartbeat (`fleet_registry.py`) runs for the app's lifetime, the `CrossInstance`
middleware (`fleet_edge.py`) takes requests for other instances' calls to their
owner, and `FleetCalls` wraps the process's `CallService`: each answered call is
mapped to this instance at once, a hang-up removes the mapping, a re-offer that
names a session is published so every member ends that user's older call of it (a
call moved to another instance), and with
`--fleet-max-calls` an offer is refused (`503 at_capacity`) when the fleet's live
calls reach it. Without a registry answer the fleet limit is not applied: each
instance keeps its own `--max-calls` (new calls must keep working when Redis is
down). Imports aiohttp, settings, the calls' service and manager, errors, counters
and the two fleet modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.agent_api import Modality
from gateway.auth.principal import Principal
from gateway.calls.manager import CallManager
from gateway.calls.service import Answer, CallService, WorkerLoad
from gateway.cluster.fleet_edge import CrossInstance
from gateway.cluster.fleet_registry import FleetRegistry
from gateway.config import Settings
from gateway.errors import AtCapacity
from gateway.metrics.counters import COUNTERS

logger = logging.getLogger(__name__)

#: The fleet's registry, for whoever needs it (tests, `/stats`).
REGISTRY_KEY = web.AppKey("fleet_registry", FleetRegistry)


class FleetCalls:
    """A process's `CallService` as a member of the fleet."""

    def __init__(
        self, inner: CallService, registry: FleetRegistry, *, max_calls: int | None
    ) -> None:
        self._inner = inner
        self._registry = registry
        self._max_calls = max_calls

    @property
    def live_calls(self) -> int:
        return self._inner.live_calls

    def workers(self) -> list[WorkerLoad]:
        return self._inner.workers()

    def instance_calls(self) -> int:
        """Live calls of this instance, over all its workers."""
        return sum(load.calls for load in self._inner.workers())

    async def accept_offer(
        self,
        offer_sdp: str,
        *,
        user_id: str,
        session_id: str | None,
        modality: Modality,
        requester: Principal | None = None,
        source: str = "",
    ) -> Answer:
        if self._max_calls is not None:
            total = self._registry.fleet_calls(self.instance_calls())
            if total is not None and total >= self._max_calls:
                COUNTERS.add("fleet_at_capacity")
                raise AtCapacity("every instance of the gateway is at capacity; try again shortly")
        answer = await self._inner.accept_offer(
            offer_sdp,
            user_id=user_id,
            session_id=session_id,
            modality=modality,
            requester=requester,
            source=source,
        )
        await self._registry.register_call(answer.call_id)
        if session_id is not None:  # a moved call: members end their older ones
            await self._registry.publish_move(user_id, answer.session_id, answer.call_id)
        return answer

    async def add_candidates(
        self,
        call_id: str,
        sdpfrag: str,
        *,
        requester: Principal | None = None,
        ice_tags: frozenset[str] | None = None,
    ) -> None:
        await self._inner.add_candidates(call_id, sdpfrag, requester=requester, ice_tags=ice_tags)

    async def hang_up(self, call_id: str, *, requester: Principal | None = None) -> None:
        await self._inner.hang_up(call_id, requester=requester)
        await self._registry.unregister_call(call_id)


def add_fleet(
    app: web.Application, settings: Settings, local: CallManager, service: CallService
) -> CallService:
    """Make this process a member of the fleet in `settings.redis_url`; the service
    the edges use from now on. Call before the app starts (adds a middleware)."""
    assert settings.redis_url is not None
    registry = FleetRegistry(
        settings.redis_url,
        url=settings.advertised_url,
        capacity=settings.max_calls,
        prefix=f"{settings.app_name}:fleet:",
        local_call_ids=local.call_ids,
        instance_calls=lambda: sum(load.calls for load in service.workers()),
    )
    app[REGISTRY_KEY] = registry
    edge = CrossInstance(
        registry,
        local,
        mode=settings.cross_instance,
        max_body_bytes=settings.max_offer_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    app.middlewares.append(edge.middleware)  # innermost: errors become problems outside

    async def membership(_: web.Application) -> AsyncIterator[None]:
        await registry.heartbeat()  # registered before the first request is served
        logger.info(
            "fleet member %s (registry %s)",
            registry.url,
            "answers" if registry.available else "unavailable",
        )
        heartbeat = asyncio.create_task(registry.run(), name="fleet/heartbeat")
        moves = asyncio.create_task(
            registry.listen_moves(
                lambda user_id, session_id, keep: local.end_moved_calls_soon(
                    user_id, session_id, keep=keep
                )
            ),
            name="fleet/moves",
        )
        yield
        for task in (heartbeat, moves):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await registry.leave()  # bounded: REDIS_TIMEOUT_S
        await edge.close()
        await registry.close()

    app.cleanup_ctx.append(membership)
    return FleetCalls(service, registry, max_calls=settings.fleet_max_calls)
