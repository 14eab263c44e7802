"""Process-wide event counters an operator reads in `/stats`: the live sessions'
stalls and their recoveries (`agent`), the limits that refused or ended
something (`limits`), the session store's failures and expiries (`session_store`),
and the fleet's registry and cross-instance requests (`fleet`).

One `Counters` per process (`COUNTERS`); a multi-worker gateway copies each
worker's values into its slot of the shared load board on every change, so any
worker can report the sum; `on_add` mirrors each addition into the Prometheus
instruments (`instruments.count_event`, wired by the app). Names are fixed here
(the board's layout depends on them). Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

#: The stall watchdog's counters (gateway/adk/stall_watchdog.py), in board order.
AGENT_HEALTH_NAMES: tuple[str, ...] = (
    "stalls_no_reply",
    "stalls_empty_turn",
    "stalls_after_tool",
    "stalls_mid_reply",
    "nudges",
    "rotations",
    "recovered",
    "unrecovered",
    "upstream_reconnects",
    "upstream_goaways",
)


#: Limits that refused a request or ended a call (gateway/auth, gateway/calls).
LIMIT_NAMES: tuple[str, ...] = (
    "auth_failures",
    "rate_limited_auth",
    "rate_limited_setups",
    "sessions_per_user_refused",
    "forbidden",
    "text_turns_dropped",
    "ended_max_length",
    "ended_idle",
    "limits_store_errors",
)
#: Instances that know each other through Redis (gateway/cluster/fleet_*.py).
FLEET_NAMES: tuple[str, ...] = (
    "registry_outages",
    "registry_unavailable_refused",
    "cross_instance_proxied",
    "cross_instance_redirected",
    "owner_unavailable",
    "fleet_at_capacity",
)
#: The session store (gateway/adk/store_guard.py, gateway/adk/retention.py): operations
#: that failed after their retries, retries made, sessions expired by retention.
STORE_NAMES: tuple[str, ...] = (
    "session_store_failures",
    "session_store_retries",
    "sessions_expired",
)
#: Every counter, in board order.
COUNTER_NAMES: tuple[str, ...] = AGENT_HEALTH_NAMES + LIMIT_NAMES + FLEET_NAMES + STORE_NAMES


class Counters:
    """Named counters; `on_change` hears every change (the load board's writer)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._values = dict.fromkeys(names, 0)
        self.on_change: Callable[[tuple[int, ...]], None] | None = None
        self.on_add: Callable[[str, int], None] | None = None

    def add(self, name: str, amount: int = 1) -> None:
        self._values[name] += amount  # KeyError for a name not declared above
        if self.on_add is not None:
            self.on_add(name, amount)
        if self.on_change is not None:
            self.on_change(self.values())

    def values(self) -> tuple[int, ...]:
        return tuple(self._values[name] for name in self.names)

    def reset(self) -> None:
        """Back to zero (tests)."""
        self._values = dict.fromkeys(self.names, 0)


COUNTERS = Counters(COUNTER_NAMES)


def counters_json(values: tuple[int, ...]) -> dict[str, object]:
    """The `agent` and `limits` sections of `/stats` for `values` (in
    `COUNTER_NAMES` order; missing values read 0)."""
    named: Mapping[str, int] = dict(zip(COUNTER_NAMES, values, strict=False))
    return {
        "agent": _agent_health(named),
        "limits": {name: named.get(name, 0) for name in LIMIT_NAMES},
        "fleet": {name: named.get(name, 0) for name in FLEET_NAMES},
        "session_store": {
            "failures": named.get("session_store_failures", 0),
            "retries": named.get("session_store_retries", 0),
            "expired": named.get("sessions_expired", 0),
        },
    }


def _agent_health(named: Mapping[str, int]) -> dict[str, object]:
    return {
        "stalls": {
            name.removeprefix("stalls_"): named.get(name, 0)
            for name in AGENT_HEALTH_NAMES
            if name.startswith("stalls_")
        },
        **{
            name: named.get(name, 0)
            for name in AGENT_HEALTH_NAMES
            if not name.startswith("stalls_")
        },
    }
