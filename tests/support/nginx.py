"""Debian's nginx with docs/deploy/nginx.conf, in front of a gateway, for one test.

`nginx_in_front` renders the shipped template for test ports, a test certificate
and the gateway's port (every value it replaces must be in the template, so the
template cannot drift away from what is tested), wraps it in a main configuration
whose paths all live in a private prefix directory, and runs `nginx -g 'daemon off;'`
until the test is done (SIGQUIT, then SIGKILL; the prefix removed). Run as root,
nginx's workers drop to its default unprivileged user, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO_ROOT
from tests.support.gateway_process import free_port, stop, until_listening

TEMPLATE = REPO_ROOT / "docs" / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
START_TIMEOUT_S = 10.0

#: The main configuration around the template: logs, pid and temporary files in the
#: prefix (Debian's build puts them under /var), nothing else.
MAIN_CONF = """\
pid nginx.pid;
error_log logs/error.log info;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log logs/access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    include {site};
}}
"""


@dataclass(frozen=True, slots=True)
class Nginx:
    https_base: str
    """`https://127.0.0.1:<port>`"""
    http_base: str
    """`http://127.0.0.1:<port>`: the redirect to HTTPS"""
    prefix: Path

    def error_log(self) -> str:
        return (self.prefix / "logs" / "error.log").read_text(errors="replace")


def render(template: str, substitutions: dict[str, str]) -> str:
    """`template` with each key replaced; a key it lacks is a test failure."""
    for old, new in substitutions.items():
        assert old in template, f"docs/deploy/nginx.conf no longer has {old!r}"
        template = template.replace(old, new)
    return template


@contextlib.asynccontextmanager
async def nginx_in_front(
    gateway_port: int, cert_path: Path, key_path: Path
) -> AsyncIterator[Nginx]:
    """nginx serving HTTPS (and the redirect) on free loopback ports, proxying to
    the gateway on `gateway_port`."""
    https_port, http_port = free_port(), free_port()
    prefix = _prefix(
        {
            "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
            "listen [::]:443 ssl;": "",
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "listen [::]:80;": "",
            "/etc/ssl/gateway/fullchain.pem": str(cert_path),
            "/etc/ssl/gateway/privkey.pem": str(key_path),
            "server 127.0.0.1:8080;": f"server 127.0.0.1:{gateway_port};",
        }
    )
    try:
        process = await asyncio.create_subprocess_exec(
            NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        running = Nginx(f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", prefix)
        try:
            await until_listening(
                process,
                https_port,
                START_TIMEOUT_S,
                lambda: f"nginx: {running.error_log()[-2000:]}",
            )
            yield running
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGQUIT)  # graceful stop
            await stop(process, timeout_s=5.0)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def _prefix(substitutions: dict[str, str]) -> Path:
    """A private prefix directory with the rendered site and its main configuration."""
    assert Path(NGINX).exists(), "nginx is missing: run scripts/bootstrap --test"
    prefix = Path(tempfile.mkdtemp(prefix="nginx-test-"))
    prefix.chmod(0o755)  # nginx's unprivileged workers reach their temporary files
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir()
    site = prefix / "adk-gateway.conf"
    site.write_text(render(TEMPLATE.read_text(), substitutions))
    (prefix / "nginx.conf").write_text(MAIN_CONF.format(site=site))
    return prefix
