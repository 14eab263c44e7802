"""The gateway's Prometheus instruments (prometheus-client), each defined once here.

Every process records into these; `GET /metrics` (`exposition.py`) reads them. A
multi-worker gateway runs prometheus-client's multiprocess mode: the supervisor
gives its workers one private directory in `PROMETHEUS_MULTIPROC_DIR`, each worker
writes its values to memory-mapped files there, and the worker answering
`/metrics` merges them (counters and histograms summed, so what a worker counted
survives its death; live gauges summed over the workers still running). Names
follow https://prometheus.io/docs/practices/naming/ (base units, `_total` on
counters). Imports prometheus-client and the counter names of `counters.py` only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.metrics.counters import AGENT_HEALTH_NAMES, LIMIT_NAMES

#: One process's instruments (a one-process gateway serves this registry).
REGISTRY = CollectorRegistry(auto_describe=True)

CALLS_LIVE = Gauge(
    "gateway_calls_live",
    "Live sessions: WebRTC calls and WebSocket sessions, each holding an agent session.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
CALLS_ADMITTED = Counter(
    "gateway_calls_admitted",
    "Sessions (calls and WebSockets) given a place within max_calls.",
    registry=REGISTRY,
)
CALLS_REFUSED = Counter(
    "gateway_calls_refused",
    "Call and WebSocket set-ups refused, by the error code the client got.",
    ["reason"],
    registry=REGISTRY,
)
#: Reasons shown (at 0) before anything is refused, so dashboards have the series.
COMMON_REFUSALS = ("at_capacity", "too_many_sessions", "rate_limited", "draining")
#: From a few seconds (a caller who gives up) to `max_call_s`'s default hour.
DURATION_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
CALL_DURATION = Histogram(
    "gateway_call_duration_seconds",
    "How long answered sessions lasted, by transport (webrtc, websocket).",
    ["transport"],
    buckets=DURATION_BUCKETS_S,
    registry=REGISTRY,
)
DRAINING = Gauge(
    "gateway_draining",
    "1 while the gateway drains (takes no new calls), else 0.",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
UPSTREAM_RECONNECTS = Counter(
    "gateway_upstream_reconnects",
    "Reconnections of live agent sessions to the model after an upstream failure.",
    registry=REGISTRY,
)
UPSTREAM_GO_AWAYS = Counter(
    "gateway_upstream_goaways",
    "goAway messages from the Live API (each followed by ADK's own reconnect).",
    registry=REGISTRY,
)
AGENT_STALLS = Counter(
    "gateway_agent_stalls",
    "Model stalls the watchdog saw, by kind (docs/gemini-live.md).",
    ["kind"],
    registry=REGISTRY,
)
AGENT_RECOVERY = Counter(
    "gateway_agent_recovery_actions",
    "What the stall watchdog did and how it ended (nudges, rotations, recovered, unrecovered).",
    ["action"],
    registry=REGISTRY,
)
LIMIT_EVENTS = Counter(
    "gateway_limit_events",
    "Limits that refused a request or ended a session (the `limits` of /stats).",
    ["limit"],
    registry=REGISTRY,
)

for _reason in COMMON_REFUSALS:
    CALLS_REFUSED.labels(_reason)
for _transport in ("webrtc", "websocket"):
    CALL_DURATION.labels(_transport)
for _name in AGENT_HEALTH_NAMES:
    if _name.startswith("stalls_"):
        AGENT_STALLS.labels(_name.removeprefix("stalls_"))
    elif not _name.startswith("upstream_"):
        AGENT_RECOVERY.labels(_name)
for _name in LIMIT_NAMES:
    LIMIT_EVENTS.labels(_name)


def count_event(name: str, amount: int) -> None:
    """Mirror one of `counters.COUNTERS` (the /stats counters) into its instrument."""
    if name == "upstream_reconnects":
        UPSTREAM_RECONNECTS.inc(amount)
    elif name == "upstream_goaways":
        UPSTREAM_GO_AWAYS.inc(amount)
    elif name.startswith("stalls_"):
        AGENT_STALLS.labels(name.removeprefix("stalls_")).inc(amount)
    elif name in AGENT_HEALTH_NAMES:
        AGENT_RECOVERY.labels(name).inc(amount)
    else:
        LIMIT_EVENTS.labels(name).inc(amount)
