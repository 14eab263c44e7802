# The gateway's image: `python -m gateway`, configured by GATEWAY_* environment
# variables (gateway/config.py), exactly the command the tests start
# (tests/support/gateway_process.py). Kubernetes manifests: deploy/kubernetes/,
# docs/deploy.md section 8. Build from the checkout: `docker build -t adk-webrtc-gateway .`
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# What the gateway loads at run time (scripts/bootstrap's list without --test): the
# offline model's speech synthesis, libespeak-ng through ctypes and espeak-ng's data.
# sox, also on that list, is only called by the tests (tests/support/speech.py).
# Versions float with Debian 12's security updates rather than being pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng libespeak-ng1 \
    && rm -rf /var/lib/apt/lists/*

# A system user with no shell and no home of its own; the numeric id is what the
# Kubernetes manifests' runAsUser names (runAsNonRoot needs a number to check).
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin gateway

WORKDIR /app
# Editable, as scripts/bootstrap installs it: the app serves the browser client from
# the checkout's client/ beside gateway/ (gateway/app.py, CLIENT_DIR).
COPY setup.cfg pyproject.toml README.md ./
COPY gateway ./gateway
COPY client ./client
RUN pip install -e . \
    && mkdir -p /app/var && chown gateway:gateway /app/var

USER 10001:10001
# Listen on every interface of the container (or of the node, with hostNetwork);
# off loopback the gateway refuses to start without authentication (docs/auth.md).
# HOME: the user has none; caches a library may write go to /tmp (an emptyDir under
# Kubernetes, whose root file system is read-only).
ENV GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    HOME=/tmp
EXPOSE 8080
# Exec form: python is PID 1 and gets SIGTERM itself, which starts the drain; it
# installs its own signal handlers and reaps its worker processes.
ENTRYPOINT ["python", "-m", "gateway"]
