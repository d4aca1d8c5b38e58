"""The deployment files agree with the service: probes, ports, grace periods, metric names.

``make lint-deploy`` lints them (yamllint, kubernetes-validate, hadolint); this checks what a
schema cannot: that they point at what the service really serves and reads.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Config
from tests.helpers.processes import REPO

KUBE = REPO / "deploy" / "kubernetes"
VENV_BIN = Path(sys.executable).parent


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _by_kind() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(KUBE.rglob("*.yaml")):
        for doc in _docs(path):
            found[(doc["kind"], doc.get("metadata", {}).get("name", ""))] = doc
    return found


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    return create_app(Config(state_uri=f"file://{tmp_path}")).test_client()


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_api_probes_and_ports_are_served(client: FlaskClient) -> None:
    resources = _by_kind()
    api = _container(resources[("Deployment", "finetune-api")])
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert client.get(api[probe]["httpGet"]["path"]).status_code == 200
    assert api["ports"][0]["containerPort"] == 8080
    service = resources[("Service", "finetune-api")]
    labels = resources[("Deployment", "finetune-api")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert (
        resources[("PodDisruptionBudget", "finetune-api")]["spec"]["selector"][
            "matchLabels"
        ].items()
        <= labels.items()
    )
    hpa = resources[("HorizontalPodAutoscaler", "finetune-api")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "finetune-api"
    assert "nvidia.com/gpu" not in str(api["resources"])


def test_workers_get_a_gpu_and_a_grace_period_longer_than_the_checkpoint_grace() -> None:
    resources = _by_kind()
    deployment = resources[("Deployment", "finetune-worker")]
    pod = deployment["spec"]["template"]["spec"]
    worker = _container(deployment)
    assert worker["command"][-2:] == ["service", "worker"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    config = resources[("ConfigMap", "finetune-config")]["data"]
    grace = int(config["FINETUNE_SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] == 120 and grace == 90
    assert pod["terminationGracePeriodSeconds"] > grace
    assert int(config["FINETUNE_WORKER_METRICS_PORT"]) == worker["ports"][0]["containerPort"]


#: The worker pools: Deployment name -> GPUs of each worker.
WORKER_POOLS = {"finetune-worker": 1, "finetune-worker-multi-gpu": 4}


@pytest.mark.parametrize(("name", "gpus"), WORKER_POOLS.items())
def test_each_worker_pool_requests_the_gpus_of_its_shape(name: str, gpus: int) -> None:
    resources = _by_kind()
    deployment = resources[("Deployment", name)]
    pod = deployment["spec"]["template"]["spec"]
    worker = _container(deployment)
    assert worker["command"][-2:] == ["service", "worker"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert gpus <= Config().max_gpus_per_job  # a job of the pool's size is accepted
    assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    if gpus > 1:
        assert pod["nodeSelector"]["nvidia.com/gpu.count"] == str(gpus)
    # No logical devices on a GPU pool: the worker offers its GPUs.
    assert all(e["name"] != "FINETUNE_LOGICAL_DEVICES" for e in worker["env"])


def test_the_worker_pools_select_only_their_own_pods() -> None:
    resources = _by_kind()
    pools = [resources[("Deployment", name)] for name in WORKER_POOLS]
    for pool in pools:
        selector = pool["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pool["spec"]["template"]["metadata"]["labels"].items()
        for other in pools:
            if other is not pool:
                labels = other["spec"]["template"]["metadata"]["labels"]
                assert not selector.items() <= labels.items()
    kustomization = (KUBE / "kustomization.yaml").read_text()
    assert "worker-multi-gpu-deployment.yaml" in kustomization


def test_config_and_secrets_come_by_reference_and_are_read_by_the_service() -> None:
    resources = _by_kind()
    config_names = set(resources[("ConfigMap", "finetune-config")]["data"])
    known = set(
        re.findall(r"\"?(FINETUNE_[A-Z_]+|AWS_[A-Z_0-9]+)", (REPO / "README.md").read_text())
    )
    assert config_names <= known, f"undocumented settings: {config_names - known}"
    for name in ("finetune-api", *WORKER_POOLS):
        container = _container(resources[("Deployment", name)])
        assert {"configMapRef": {"name": "finetune-config"}} in container["envFrom"]
        secret_refs = [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
        assert {e["name"] for e in secret_refs} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert all("value" not in e for e in secret_refs)
    secret = _docs(KUBE / "secret.example.yaml")[0]
    assert "secret.example.yaml" not in (KUBE / "kustomization.yaml").read_text()
    assert set(secret["stringData"]) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_keda_scales_workers_on_metrics_the_api_exports(client: FlaskClient) -> None:
    scaled = _docs(KUBE / "optional" / "keda-scaledobject.yaml")[0]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["kind"] == "ScaledObject"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "finetune-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    exported = client.get("/metrics").get_data(as_text=True)
    for metric in re.findall(r"(finetune_[a-z_]+)", trigger["metadata"]["query"]):
        assert f"\n{metric}" in exported or exported.startswith(metric), metric


def test_compose_file_wires_minio_api_and_worker() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"minio", "create-bucket", "api", "worker"} <= set(services)
    assert services["api"]["environment"]["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
    assert services["worker"]["command"][-2:] == ["service", "worker"]
    assert services["worker"]["stop_grace_period"] == "120s"


def test_lint_deploy_passes() -> None:
    """The same commands as `make lint-deploy`, with the tools of this environment."""
    tools = {
        name: shutil.which(name, path=str(VENV_BIN))
        for name in ("yamllint", "kubernetes-validate", "hadolint")
    }
    missing = [name for name, path in tools.items() if path is None]
    assert not missing, f"install the dev extras: {missing}"
    manifests = [str(p) for p in sorted(KUBE.glob("*.yaml")) if p.name != "kustomization.yaml"]
    for argv in (
        [tools["yamllint"], "-s", "deploy", "examples", ".yamllint.yaml"],
        [tools["kubernetes-validate"], "--strict", "--quiet", *manifests],
        [tools["hadolint"], "Dockerfile"],
    ):
        run = subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
        )
        assert run.returncode == 0, f"{argv[0]}: {run.stdout}{run.stderr}"


def _dockerfile_env() -> dict[str, str]:
    """The ``ENV`` values of the Dockerfile (``NAME=value`` pairs)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line))
    return found


def _under(path: str, mounts: list[str]) -> bool:
    return any(path == mount or path.startswith(mount.rstrip("/") + "/") for mount in mounts)


def test_the_image_runs_as_a_non_root_user_with_its_caches_in_tmp() -> None:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    uid = re.search(r"ARG APP_UID=(\d+)", "\n".join(lines))
    assert user == "${APP_UID}" and uid and int(uid.group(1)) > 0
    env = _dockerfile_env()
    for cache in ("MPLCONFIGDIR", "KERAS_HOME", "CUDA_CACHE_PATH"):
        assert env[cache].startswith("/tmp/"), cache


@pytest.mark.parametrize("name", ["finetune-api", *WORKER_POOLS])
def test_pods_run_non_root_on_a_read_only_root_with_every_written_path_a_volume(
    name: str,
) -> None:
    deployment = _by_kind()[("Deployment", name)]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    container = _container(deployment)
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert all("emptyDir" in volumes[mount] for mount in mounts)
    env = {**_dockerfile_env(), **{e["name"]: e["value"] for e in container["env"] if "value" in e}}
    written = ["/tmp", *(env[v] for v in ("MPLCONFIGDIR", "KERAS_HOME", "CUDA_CACHE_PATH"))]
    if name == "finetune-api":
        written.append(env["PROMETHEUS_MULTIPROC_DIR"])
    else:
        written.append(env["FINETUNE_WORK_DIR"])
    unmounted = [path for path in written if not _under(path, list(mounts.values()))]
    assert unmounted == [], f"{name} writes to the read-only root: {unmounted}"


def test_compose_runs_api_and_worker_non_root_on_a_read_only_root() -> None:
    services = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())["services"]
    for name in ("api", "worker"):
        service = services[name]
        assert service["read_only"] is True, name
        assert not service["user"].startswith("0"), name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
    worker_mounts = [volume.split(":")[1] for volume in services["worker"]["volumes"]]
    assert _dockerfile_env()["FINETUNE_WORK_DIR"] in worker_mounts
