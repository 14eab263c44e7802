"""Process-wide event counters an operator reads in `/stats`: the live sessions'
stalls and their recoveries.

One `Counters` per process (`AGENT_HEALTH`); a multi-worker gateway copies each
worker's values into its slot of the shared load board on every change, so any
worker can report the sum. Names are fixed here (the board's layout depends on
them). Standard library only.
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
)


class Counters:
    """Named counters; `on_change` hears every change (the load board's writer)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._values = dict.fromkeys(names, 0)
        self.on_change: Callable[[tuple[int, ...]], None] | None = None

    def add(self, name: str, amount: int = 1) -> None:
        self._values[name] += amount  # KeyError for a name not declared above
        if self.on_change is not None:
            self.on_change(self.values())

    def values(self) -> tuple[int, ...]:
        return tuple(self._values[name] for name in self.names)

    def reset(self) -> None:
        """Back to zero (tests)."""
        self._values = dict.fromkeys(self.names, 0)


AGENT_HEALTH = Counters(AGENT_HEALTH_NAMES)


def agent_health_json(values: tuple[int, ...]) -> dict[str, object]:
    """The `agent` section of `/stats` for `values` (in `AGENT_HEALTH_NAMES` order)."""
    named: Mapping[str, int] = dict(zip(AGENT_HEALTH_NAMES, values, strict=False))
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
