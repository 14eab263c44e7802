"""Every place the gateway reaches into aioice's internals, and nowhere else.

1. Host addresses: aioice gathers host candidates from every interface except
   127.0.0.1 and has no option to choose them; the only seam is its module-level
   `aioice.ice.get_host_addresses`, which `set_host_addresses` replaces
   process-wide (aioice reads it at gathering time for every connection).
2. The consent task (`Connection._query_consent_task`): hung up while ICE is still
   checking, `connect()` resumes after `close()` and starts a consent-freshness task
   that runs on (up to 30 s) on closed sockets; `cancel_consent_checks` stops it.
3. The selected pair (`Connection._nominated`, component -> CandidatePair): aioice
   has no public getter; `nominated_candidate_types` reads which kinds of candidate
   (host, srflx, relay) a connected call uses, for logs and tests.

`shape_problems()` lists what no longer matches in the installed aioice;
`tests/test_seams.py` fails on any. Imports aioice only.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable

import aioice.ice

#: (use_ipv4, use_ipv6) -> the local addresses to gather host candidates on.
HostAddresses = Callable[[bool, bool], list[str]]

_CONSENT_TASK_ATTR = "_query_consent_task"
_NOMINATED_ATTR = "_nominated"
_HOST_ADDRESSES_FUNCTION = "get_host_addresses"
_LIBRARY_HOST_ADDRESSES: HostAddresses = aioice.ice.get_host_addresses


def set_host_addresses(choose: HostAddresses | None) -> HostAddresses:
    """Make aioice gather host candidates on what `choose` returns (None: aioice's
    own choice); returns what was in place, to restore it."""
    previous: HostAddresses = getattr(aioice.ice, _HOST_ADDRESSES_FUNCTION)
    setattr(aioice.ice, _HOST_ADDRESSES_FUNCTION, choose or _LIBRARY_HOST_ADDRESSES)
    return previous


async def cancel_consent_checks(connection: object) -> bool:
    """Stop a consent-freshness task still running on `connection`; True if one was."""
    task = getattr(connection, _CONSENT_TASK_ATTR, None)
    if not isinstance(task, asyncio.Task) or task.done():
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True


def nominated_candidate_types(connection: object) -> list[tuple[str, str]]:
    """(local type, remote type) of each component's selected pair ("host", "srflx",
    "prflx", "relay"); empty before ICE has selected one."""
    nominated = getattr(connection, _NOMINATED_ATTR, None)
    if not isinstance(nominated, dict):
        return []
    return [
        (pair.local_candidate.type, pair.remote_candidate.type)
        for _, pair in sorted(nominated.items())
    ]


def shape_problems() -> list[str]:
    """What in the installed aioice no longer matches the touches above (empty: all do)."""
    problems = []
    if "get_host_addresses(" not in inspect.getsource(aioice.ice.Connection.gather_candidates):
        problems.append("Connection.gather_candidates no longer calls get_host_addresses")
    if list(inspect.signature(_LIBRARY_HOST_ADDRESSES).parameters) != ["use_ipv4", "use_ipv6"]:
        problems.append("aioice.ice.get_host_addresses takes other arguments")
    connection_source = inspect.getsource(aioice.ice.Connection)
    if f"self.{_CONSENT_TASK_ATTR} = asyncio.create_task(" not in connection_source:
        problems.append("Connection no longer keeps its consent task in _query_consent_task")
    if f"self.{_NOMINATED_ATTR}: dict[int, CandidatePair]" not in connection_source:
        problems.append("Connection no longer keeps its selected pairs in _nominated")
    pair = inspect.getsource(aioice.ice.CandidatePair)
    if "def local_candidate(" not in pair or "self.remote_candidate" not in pair:
        problems.append("CandidatePair no longer has local_candidate and remote_candidate")
    return problems
