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

# Per call, at hang-up: how its audio travelled (gateway/rtc/link_quality.py).
LOSS_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
CALL_PACKET_LOSS = Histogram(
    "gateway_call_packet_loss_ratio",
    "Fraction of RTP packets lost over a call, by direction: uplink (caller to gateway, "
    "counted by the gateway), downlink (from the caller's RTCP receiver reports).",
    ["direction"],
    buckets=LOSS_BUCKETS,
    registry=REGISTRY,
)
JITTER_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
CALL_JITTER = Histogram(
    "gateway_call_jitter_seconds",
    "Interarrival jitter (RFC 3550) at the end of a call, by direction.",
    ["direction"],
    buckets=JITTER_BUCKETS_S,
    registry=REGISTRY,
)
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
CALL_RTT = Histogram(
    "gateway_call_rtt_seconds",
    "Round-trip time to the caller at the end of a call (RTCP LSR/DLSR).",
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
REPLY_LATENCY = Histogram(
    "gateway_agent_reply_latency_seconds",
    "From the caller's turn reaching the agent's side (its final transcript, or a typed "
    "turn) to the first reply audio or text sent to the caller.",
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
BARGE_IN_SILENCE = Histogram(
    "gateway_barge_in_silence_seconds",
    "From the agent's `interrupted` to the first silent packet sent to the caller.",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.1, 0.2, 0.5),
    registry=REGISTRY,
)

for _reason in COMMON_REFUSALS:
    CALLS_REFUSED.labels(_reason)
for _transport in ("webrtc", "websocket"):
    CALL_DURATION.labels(_transport)
for _direction in ("uplink", "downlink"):
    CALL_PACKET_LOSS.labels(_direction)
    CALL_JITTER.labels(_direction)
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
