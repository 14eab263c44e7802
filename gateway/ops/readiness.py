"""Readiness: whether a load balancer should send this gateway new calls (`GET /readyz`).

`/healthz` is liveness (the process answers); `/readyz` is readiness. 200
`{"state": "ready", "checks": {...}}` when every worker serves, none drains and
every readiness check passes; otherwise 503, an RFC 9457 problem as every error of
the gateway is (`application/problem+json`), whose `code` and `state` are
`starting` (a worker has not started yet, or is being restarted), `draining`
(SIGTERM or `POST /admin/drain`: gateway/ops/drain.py) or `unavailable` (a check
failed), with `reasons`, one line each, safe to show (no URLs, no secrets).

The seam other parts plug into: `Readiness.add_check(name, check)`. A check is an
async function of no arguments that returns when its dependency can serve and
raises (any exception; its message is the reason) when it cannot. Checks run
concurrently on every probe, each bounded by `CHECK_TIMEOUT_S` (a check that
hangs is a failed check), so keep them cheap: one round trip. The session store's
check (`app.add_store_readiness`) is the first.
May import aiohttp, the errors and the `WorkerLoad` value; nothing of calls, aiortc
or ADK.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import hdrs, web

from gateway.calls.service import WorkerLoad
from gateway.errors import PROBLEM_JSON_TYPE, GatewayError, error_reply

logger = logging.getLogger(__name__)

#: One check's bound: a probe answers within it (balancers time out at 1-5 s;
#: Kubernetes' default probe timeoutSeconds is 1, so set it to 3 or more).
CHECK_TIMEOUT_S = 2.0

ReadinessCheck = Callable[[], Awaitable[None]]
Status = Literal["ready", "starting", "draining", "unavailable"]


class Readiness:
    """This process's state (starting, serving, draining), its siblings' (from
    `workers`: every serving process), and the named readiness checks."""

    def __init__(
        self, workers: Callable[[], list[WorkerLoad]], *, expected_workers: int = 1
    ) -> None:
        self._workers = workers
        self._expected_workers = expected_workers
        self._checks: dict[str, ReadinessCheck] = {}
        self.started = False
        self.draining = False

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Run `check` on every probe; `name` labels it in the answer."""
        self._checks[name] = check

    async def evaluate(self) -> tuple[Status, list[str], dict[str, str]]:
        """The status, the reasons it is not `ready`, and each check's outcome."""
        workers = self._workers()
        results = await asyncio.gather(*(self._run(c) for c in self._checks.values()))
        checks = dict(zip(self._checks, results, strict=True))
        reasons: list[str] = []
        status: Status = "ready"
        if self.draining or any(w.draining for w in workers):
            status = "draining"
            reasons.append("the gateway is draining: it takes no new calls")
        elif not self.started or len(workers) < self._expected_workers:
            status = "starting"
            reasons.append(f"{len(workers)} of {self._expected_workers} workers serve")
        failed = {name: outcome for name, outcome in checks.items() if outcome != "ok"}
        if failed:
            status = "unavailable" if status == "ready" else status
            reasons.extend(f"{name}: {outcome}" for name, outcome in failed.items())
        return status, reasons, checks

    async def _run(self, check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_S:g} s"
        except Exception as exc:  # boundary: any failure is "not ready", said once
            return str(exc)[:200] or type(exc).__name__
        return "ok"


READINESS_KEY = web.AppKey("readiness", Readiness)


async def readyz(request: web.Request) -> web.Response:
    """200 when this gateway should get new calls, else a 503 problem saying why."""
    state, reasons, checks = await request.app[READINESS_KEY].evaluate()
    headers = {"Cache-Control": "no-store"}
    if state == "ready":
        return web.json_response({"state": state, "checks": checks}, headers=headers)
    logger.debug("not ready: %s", "; ".join(reasons))
    reply = error_reply(GatewayError.from_wire(state, "; ".join(reasons), http_status=503))
    body = {**reply.http_body(), "state": state, "reasons": reasons, "checks": checks}
    return web.Response(
        status=503,
        body=json.dumps(body).encode(),
        headers={**headers, hdrs.CONTENT_TYPE: PROBLEM_JSON_TYPE},
    )


def add_readiness(app: web.Application, readiness: Readiness) -> None:
    """Serve `/readyz`; the app counts as started once its start-up hooks (the
    session store check among them) have run."""
    app[READINESS_KEY] = readiness

    async def started(_: web.Application) -> None:
        readiness.started = True

    app.on_startup.append(started)
    app.router.add_get("/readyz", readyz)
