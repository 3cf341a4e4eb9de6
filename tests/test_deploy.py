"""docker-compose.yml, the Dockerfile and deploy/kubernetes: checked by their own tools
(``docker-compose config``, ``kubectl kustomize``), and every command, queue, task, file and
name they refer to checked against the package."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncworker.celeryapp import create_app
from syncworker.cli import build_parser
from syncworker.config import REDIS_URL_ENV, load_config
from syncworker.worker import tasknames as names
from syncworker.worker.schedule import beat_schedule
from syncworker.worker.tasknames import QUEUE_ONDEMAND, QUEUE_REPO, QUEUE_WALK
from tests.support.tools import DEBIAN_PACKAGES, run_tool

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
KUBE = ROOT / "deploy" / "kubernetes"
QUEUES = {QUEUE_WALK, QUEUE_REPO, QUEUE_ONDEMAND}
TASKS = {"syncworker.walk_catalog", "syncworker.sync_repo", "syncworker.sync_image"}


def subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)


def check_command(args: list[str], config_path: str) -> None:
    """`syncworker <sub> -c <config_path> [options]`, with -Q naming our queues only."""
    assert args[0] in subcommands(), args
    assert args[args.index("-c") + 1] == config_path
    if "-Q" in args:
        assert set(args[args.index("-Q") + 1].split(",")) <= QUEUES


# -- docker compose -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_docker_compose_accepts_the_file(compose: dict[str, Any]) -> None:
    """Debian's docker-compose validates the file against the Compose schema, without a
    Docker daemon; the services it reads are the file's."""
    run_tool("docker-compose", "-f", COMPOSE.name, "config", "-q", cwd=ROOT)
    listed = run_tool("docker-compose", "-f", COMPOSE.name, "config", "--services", cwd=ROOT)
    assert set(listed.split()) == set(compose["services"])


def test_compose_has_the_whole_cluster(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "minio", "minio-init", "upstream", "worker", "beat", "flower"} <= set(services)
    assert services["upstream"]["image"].startswith("registry:2")
    assert "mc mb" in " ".join(services["minio-init"]["command"])
    # `--scale worker=4` needs no fixed name and no host port on the worker.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    # Any process can die (the OOM killer, a crash): the cluster restarts it.
    assert services["beat"]["restart"] == services["worker"]["restart"] == "unless-stopped"


def test_compose_commands_and_config_exist(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    services = compose["services"]
    for name in ("worker", "beat", "trigger", "status", "serve"):
        service = services[name]
        host_path, container_path, _ = service["volumes"][0].split(":")
        check_command(service["command"], container_path)
    config = load_config(ROOT / host_path)
    bucket_made = services["minio-init"]["command"][0]
    assert config.storage.storage_driver is not None
    assert f"local/{config.storage.storage_driver.bucket}" in bucket_made
    assert config.registries[0].urls == ["http://upstream:5000"]
    flower_broker = next(a for a in services["flower"]["command"] if a.startswith("--broker="))
    assert flower_broker == f"--broker={config.syncworker.redis_url}"
    assert services["redis"]["image"].startswith("redis")
    assert create_app(config).conf.worker_send_task_events is True  # flower sees tasks


def test_dockerfile_runs_the_syncworker_command() -> None:
    text = (ROOT / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["syncworker"] and "syncworker" in scripts
    check_command(cmd, "/etc/syncworker/config.yaml")
    assert re.search(r"^USER (?!root)", text, re.M)  # workers do not run as root


# -- kubernetes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kube() -> dict[tuple[str, str], dict[str, Any]]:
    """What ``kubectl apply -k deploy/kubernetes`` would apply, as kustomize renders it."""
    rendered = run_tool("kubectl", "kustomize", str(KUBE.relative_to(ROOT)), cwd=ROOT)
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in yaml.safe_load_all(rendered):
        objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def test_kustomize_renders_every_file_into_the_namespace(
    kube: dict[tuple[str, str], dict[str, Any]],
) -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    in_files = {
        (doc["kind"], doc["metadata"]["name"])
        for resource in kustomization["resources"]
        for doc in yaml.safe_load_all((KUBE / resource).read_text())
    }
    assert set(kube) == in_files
    namespace = kustomization["namespace"]
    assert ("Namespace", namespace) in kube
    for (kind, name), doc in kube.items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, (kind, name)


def pod_spec(kube: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = kube[("Deployment", name)]["spec"]["template"]["spec"]
    return spec


def test_kube_deployments_run_our_commands(kube: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployments = (
        ("syncworker-worker", "worker"),
        ("syncworker-beat", "beat"),
        ("syncworker-serve", "serve"),
    )
    for name, sub in deployments:
        spec = pod_spec(kube, name)
        container = spec["containers"][0]
        assert container["args"][0] == sub
        mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
        check_command(container["args"], mount["mountPath"])
        for volume in spec["volumes"]:
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in kube
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in kube
        for source in container["envFrom"]:
            assert ("Secret", source["secretRef"]["name"]) in kube
    assert kube[("Deployment", "syncworker-beat")]["spec"]["replicas"] == 1
    serve = pod_spec(kube, "syncworker-serve")["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert serve[probe]["httpGet"] == {"path": "/v2/", "port": "registry"}
    assert ("Service", "syncworker-serve") in kube


def test_kube_config_and_secret_load(
    kube: dict[tuple[str, str], dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = kube[("Secret", "syncworker-secrets")]["stringData"]
    assert REDIS_URL_ENV in secret
    monkeypatch.setenv(REDIS_URL_ENV, secret[REDIS_URL_ENV])
    data = yaml.safe_load(kube[("ConfigMap", "syncworker-config")]["data"]["config.yaml"])
    mounted = pod_spec(kube, "syncworker-worker")["containers"][0]["volumeMounts"]
    credentials_dir = next(m["mountPath"] for m in mounted if m["name"] == "credentials")
    sync = data["extensions"]["sync"]
    assert sync["credentialsFile"] == f"{credentials_dir}/credentials.json"
    (tmp_path / "credentials.json").write_text(secret["credentials.json"])
    sync["credentialsFile"] = str(tmp_path / "credentials.json")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    config = load_config(tmp_path / "config.yaml")
    assert config.syncworker.redis_url == secret[REDIS_URL_ENV]
    schedule = beat_schedule(config, "syncworker.walk_catalog", QUEUE_WALK)
    assert len(schedule) == len(config.registries)  # every registry has a cron or interval
    app = create_app(config)
    assert set(app.tasks) >= TASKS
    assert app.conf.broker_transport_options["visibility_timeout"] == 14400


def test_keda_scales_the_worker_on_the_repo_queue(
    kube: dict[tuple[str, str], dict[str, Any]],
) -> None:
    scaled = kube[("ScaledObject", "syncworker-worker")]["spec"]
    assert ("Deployment", scaled["scaleTargetRef"]["name"]) in kube
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == QUEUE_REPO
    host = trigger["metadata"]["address"].split(":")[0]
    assert ("Service", host) in kube
    secret_url = kube[("Secret", "syncworker-secrets")]["stringData"][REDIS_URL_ENV]
    assert f"//{trigger['metadata']['address']}/" in secret_url


def test_cluster_document_commands_exist() -> None:
    """Every `syncworker ...` line of docs/CLUSTER.md names a real sub-command, and every
    `syncworker.<name>` a task, a queue, a config section or a module."""
    section = (ROOT / "docs" / "CLUSTER.md").read_text()
    lines = [
        line.strip() for line in section.splitlines() if line.strip().startswith("syncworker ")
    ]
    assert lines
    for line in lines:
        assert line.split()[1] in subcommands(), line
    for name in re.findall(r"(?<![/\w])syncworker\.[a-z_]+", section):
        tasks = {v for k, v in vars(names).items() if k.startswith("TASK_")}
        known = tasks | QUEUES | {"syncworker.celery", "syncworker.redis"}
        assert name in known or importlib.util.find_spec(name) is not None, name


def test_install_deps_installs_every_tool_the_checks_run() -> None:
    script = (ROOT / "scripts" / "install-deps.sh").read_text()
    packages = dict(re.findall(r"^\s*\[([\w-]+)\]=([\w.+-]+)", script, re.M))
    for binary, package in DEBIAN_PACKAGES.items():
        assert packages.get(binary) == package, f"install-deps.sh: [{binary}]={package}"
