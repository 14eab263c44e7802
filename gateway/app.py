"""Composition root: wires settings, ICE, calls, signaling and the agent into an app.

`create_app` takes any `AgentConnector`, so tests wire fakes through the same
function the command line uses with the real ADK connector (`build_adk_connector`).
Given a `Membership`, the app is one worker of a multi-process gateway (`cluster/`):
its calls are its share of the capacity and the rest are reached through
`cluster.routing`.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from gateway import signaling
from gateway.agent_api import AgentConnector
from gateway.auth.cors import allow_cross_origin
from gateway.auth.credentials import Authenticator
from gateway.auth.http import EDGE_AUTH_KEY, EdgeAuth
from gateway.auth.rate_limits import UsageLimits
from gateway.calls.admission import Admission
from gateway.calls.call import CallLimits
from gateway.calls.manager import CallManager
from gateway.calls.service import CallService
from gateway.cluster.fleet import add_fleet
from gateway.cluster.routing import LOCAL_CALLS_KEY, ClusterCalls, Membership
from gateway.config import Settings
from gateway.errors import StartupError
from gateway.forwarded import TrustedProxies
from gateway.http_server import BEFORE_STOP_KEY
from gateway.metrics.counters import COUNTERS
from gateway.metrics.exposition import add_metrics_route
from gateway.metrics.instruments import count_event
from gateway.metrics.tracing import add_tracing
from gateway.ops.drain import Drain, add_drain
from gateway.ops.readiness import READINESS_KEY, Readiness, add_readiness
from gateway.rtc import ice
from gateway.rtc.ice_policy import IcePolicy
from gateway.rtc.ice_servers import IceServers
from gateway.websocket_transport import (
    WebSocketTransport,
    add_bidi_demo_routes,
    add_websocket_routes,
)

if TYPE_CHECKING:
    from gateway.agent_bridge import AdkAgentConnector

logger = logging.getLogger(__name__)

CLIENT_DIR = Path(__file__).resolve().parent.parent / "client"
SETTINGS_KEY = web.AppKey("settings", Settings)
CONNECTOR_KEY = web.AppKey("connector", AgentConnector)


def create_app(
    settings: Settings, connector: AgentConnector, member: Membership | None = None
) -> web.Application:
    """The gateway's aiohttp app, serving `connector`'s agent (as worker `member`)."""
    try:
        ice_addresses = ice.host_addresses(
            settings.ice_addresses, serving_loopback_only=settings.serves_loopback_only
        )
    except ice.UnknownInterfaceError as exc:
        raise StartupError(str(exc)) from None
    ice.restrict_host_addresses(ice_addresses)
    # Outermost but for the connection guard: handlers and their error replies see
    # the client a trusted proxy names (docs/deploy.md).
    middlewares = list(signaling.MIDDLEWARES)
    if settings.trusted_proxies:
        middlewares.insert(0, TrustedProxies(settings.trusted_proxies).middleware)
    app = web.Application(middlewares=middlewares)
    app[SETTINGS_KEY] = settings
    app[CONNECTOR_KEY] = connector
    app[signaling.MAX_BODY_KEY] = settings.max_offer_bytes
    app[signaling.BODY_TIMEOUT_KEY] = settings.body_timeout_s
    app[EDGE_AUTH_KEY] = edge_auth(settings)
    add_tracing(app)  # only when OTEL_* configure an exporter (docs/observability.md)
    # One budget for calls and WebSockets: each holds a live agent session. A
    # WebSocket stays on the worker that accepted it: the worker's share bounds both.
    admission = Admission(
        settings.max_calls if member is None else member.share,
        per_user=settings.calls_per_user,
        on_count=None if member is None else member.count_calls,
    )
    limits = CallLimits(
        setup_timeout_s=settings.call_setup_timeout_s,
        max_call_s=settings.max_call_s,
        idle_s=settings.call_idle_s,
        text_turns_per_s=settings.text_turns_per_s,
    )
    servers = ice_servers(settings)
    app[signaling.ICE_SERVERS_KEY] = servers
    manager = CallManager(
        connector,
        functools.partial(ice.gateway_rtc_configuration, servers),
        admission=admission,
        limits=limits,
        ice_policy=ice_policy(settings, servers, ice_addresses),
        max_pending_per_source=settings.max_pending_calls_per_source,
        worker=0 if member is None else member.index,
        public_ip=settings.public_ip,
    )
    app[LOCAL_CALLS_KEY] = manager
    service: CallService = manager
    if member is not None:
        COUNTERS.on_change = member.count_counters
        cluster = ClusterCalls(manager, member)
        service = cluster

        async def close_cluster(_: web.Application) -> None:
            await cluster.close()

        app.on_cleanup.append(close_cluster)
    if settings.redis_url is not None:  # one instance of several (docs/deploy.md §7)
        service = add_fleet(app, settings, manager, service)
    app[signaling.CALLS_KEY] = service

    async def hang_up_all(_: web.Application) -> None:
        await manager.close()

    app.on_shutdown.append(hang_up_all)
    signaling.add_routes(app)
    transports = [
        add_websocket_routes(app, CONNECTOR_KEY, admission=admission, limits=limits),
        add_bidi_demo_routes(app, CONNECTOR_KEY, admission=admission, limits=limits),
    ]
    _add_operations(app, settings, manager, transports, member)
    _add_client_routes(app)
    allow_cross_origin(app, settings.allowed_origins)
    return app


def _add_operations(
    app: web.Application,
    settings: Settings,
    manager: CallManager,
    transports: list[WebSocketTransport],
    member: Membership | None,
) -> None:
    """`/readyz`, the drain (`POST /admin/drain`, and after SIGTERM: `BEFORE_STOP_KEY`)
    and `/metrics`, over every worker of the gateway."""
    service = app[signaling.CALLS_KEY]
    readiness = Readiness(
        service.workers, expected_workers=1 if member is None else len(member.shares)
    )
    add_readiness(app, readiness)
    drain = Drain(
        timeout_s=settings.drain_timeout,
        admission=manager.admission,
        readiness=readiness,
        calls=manager,
        transports=transports,
        on_draining=None if member is None else member.set_draining,
    )
    add_drain(app, drain)
    app[BEFORE_STOP_KEY] = drain.run
    COUNTERS.on_add = count_event
    add_metrics_route(app, service.workers)


def ice_servers(settings: Settings) -> IceServers:
    """The STUN/TURN servers of every call (docs/deploy.md)."""
    return IceServers(
        settings.ice_servers,
        turn_urls=settings.turn_urls,
        turn_secret=settings.turn_secret,
        turn_ttl_s=settings.turn_ttl_s,
    )


def ice_policy(
    settings: Settings, servers: IceServers, ice_addresses: tuple[str, ...]
) -> IcePolicy:
    """Which callers' candidates the gateway sends checks to: besides the configured
    networks, the ranges of its own addresses (the public one behind a 1:1 NAT too)
    and the TURN servers it hands out, even on a private range: a caller's relay
    candidate on the gateway's own relay is always usable."""
    own = ice.gathering_addresses(ice_addresses)
    if settings.public_ip is not None:
        own = (*own, settings.public_ip)
    return IcePolicy.from_settings(
        max_candidates=settings.ice_max_candidates,
        allowed_networks=(*settings.ice_allowed_networks, *servers.turn_addresses()),
        own_addresses=own,
        allow_mdns=settings.ice_mdns_candidates,
    )


def edge_auth(settings: Settings) -> EdgeAuth:
    """How the edges check requests: credentials if any are configured (else anonymous
    mode, loopback only unless `--no-auth`), usage limits unless anonymous on
    loopback, and the allowed browser origins."""
    authenticator = Authenticator.from_settings(
        api_keys=settings.api_keys,
        jwt_secret=settings.jwt_secret,
        jwt_public_key=settings.jwt_public_key,
    )
    limits = None
    if settings.authenticated or settings.no_auth:
        limits = UsageLimits(
            setups_per_address=settings.offers_per_minute,
            setups_per_user=settings.user_offers_per_minute,
            auth_failures_per_address=settings.auth_failures_per_minute,
            redis_url=settings.redis_url,
        )
    return EdgeAuth(authenticator, limits, frozenset(settings.allowed_origins))


def _add_client_routes(app: web.Application) -> None:
    """The browser client, when the checkout has one: `/` and its files, and
    `/client-config`: how it gets a call token (public; no secrets in it)."""
    settings = app[SETTINGS_KEY]
    client_config = {
        "auth": "bearer" if settings.authenticated else "none",
        "token_url": settings.client_token_url,
    }

    async def serve_config(_: web.Request) -> web.Response:
        return web.json_response(client_config)

    app.router.add_get("/client-config", serve_config)
    index = CLIENT_DIR / "index.html"
    if not index.is_file():
        return

    async def serve_index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(index)

    app.router.add_get("/", serve_index)
    app.router.add_static("/client/", CLIENT_DIR)


def load_adk_connector(settings: Settings) -> AdkAgentConnector:
    """`build_adk_connector`, with every configuration mistake as a `StartupError`."""
    from gateway.adk.live_config import LiveConfigError
    from gateway.adk.live_models import RetiredModelError
    from gateway.adk.sessions import SessionStoreError

    try:
        return build_adk_connector(settings)
    except (LiveConfigError, RetiredModelError, SessionStoreError) as exc:
        raise StartupError(str(exc)) from None
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise StartupError(f"cannot load agent {settings.agent!r}: {exc}") from None


def build_adk_connector(settings: Settings) -> AdkAgentConnector:
    """The real agent: the configured ADK agent behind ADK's runner, its conversations
    in the session store at `settings.session_url`, Gemini Live settings from
    `GATEWAY_GEMINI_*` (raises `SessionStoreError` / `LiveConfigError` when wrong)."""
    from gateway.adk.live_config import gemini_credentials, load_live_settings
    from gateway.adk.sessions import build_session_service
    from gateway.agent_bridge import AdkAgentConnector, load_agent

    live = load_live_settings()
    gemini_credentials()  # half a Vertex AI configuration fails here, at start-up
    session_service = build_session_service(settings.session_url)
    agent = load_agent(settings.agent)
    return AdkAgentConnector(agent, session_service, app_name=settings.app_name, live=live)


async def check_live_api(connector: AdkAgentConnector) -> None:
    """A model the Live API does not serve, credentials it refuses or a setup it
    rejects stop start-up, naming the cause; an API that cannot be reached right now
    only gets a warning (calls are refused with 503 until it can)."""
    refused = await connector.probe_upstream()
    if refused is None:
        return
    failure, message = refused
    if failure.retryable:
        logger.warning("Gemini Live API check at start-up failed: %s", message)
        return
    raise StartupError(message)


#: The conversation `/readyz` looks up in the session store: none has this id.
READINESS_PROBE_ID = "readyz-probe"


def add_store_readiness(app: web.Application, connector: AdkAgentConnector) -> None:
    """`/readyz` checks that the session store answers: one lookup of a conversation
    that does not exist (one round trip; None is the answer when the store works).
    The reason names the error's type only: a store URL may carry a password."""

    async def session_store() -> None:
        try:
            await connector.session_service.get_session(
                app_name=connector.app_name,
                user_id=READINESS_PROBE_ID,
                session_id=READINESS_PROBE_ID,
            )
        except Exception as exc:  # boundary: any failure means "not ready"
            raise RuntimeError(f"the session store failed ({type(exc).__name__})") from None

    app[READINESS_KEY].add_check("session_store", session_store)


def freeze_startup_heap() -> None:
    """Keep the collector off the objects start-up made (ADK, pydantic, google-genai:
    ~150,000). A full collection walks them all, ~45 ms with the whole process
    stopped: every call's audio then has the same gap at the same moment."""
    gc.collect()
    gc.freeze()
    logger.debug("garbage collector: %d start-up objects frozen", gc.get_freeze_count())


def add_adk_lifecycle(
    app: web.Application, connector: AdkAgentConnector, *, session_retention_days: float = 0.0
) -> None:
    """Check the session store and the Gemini Live API at start-up (fail fast on what
    cannot work); keep the store (probe it while failing, expire old conversations);
    close runner and store at exit."""
    from gateway.adk.retention import store_upkeep
    from gateway.adk.sessions import check_session_service, close_session_service

    add_store_readiness(app, connector)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        service, app_name = connector.session_service, connector.app_name
        await check_session_service(service, app_name=app_name)  # or SessionStoreError
        logger.info("session store ready")
        await check_live_api(connector)
        freeze_startup_heap()
        retention_s = session_retention_days * 86400
        upkeep = store_upkeep(service, app_name=app_name, retention_s=retention_s)
        upkeeping = asyncio.create_task(upkeep, name="session-store-upkeep")
        try:
            yield
        finally:
            upkeeping.cancel()
            await asyncio.gather(upkeeping, return_exceptions=True)
        await connector.close()
        await close_session_service(service)

    app.cleanup_ctx.append(lifecycle)
