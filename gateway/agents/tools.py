"""Tools of the default agent (ADK function tools: plain functions, no ADK import).

Imports the standard library only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def spoken_time(now: datetime) -> str:
    """`It is 2:05 PM.`: the 12-hour clock, as a voice would say it."""
    hour = now.hour % 12 or 12
    return f"It is {hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}."


def get_current_time() -> dict[str, Any]:
    """Returns the current local time and date.

    Use it whenever the caller asks what time or what day it is.
    """
    now = datetime.now().astimezone()
    return {
        "status": "success",
        "report": spoken_time(now),
        "iso_time": now.isoformat(timespec="seconds"),
        "timezone": now.tzname() or "local",
        "weekday": now.strftime("%A"),
    }
