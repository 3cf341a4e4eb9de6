"""The api service of docker-compose.yml and deploy/kubernetes: commands that parse, ports
that line up, the token taken from the Secret, the upstream notifying the api."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from syncworker.cli import build_parser
from syncworker.cli.api import TOKEN_ENV
from syncworker.config.serving import listen_address

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
WEBHOOK = "/v1/webhooks/distribution"


def listen_port(args: list[str]) -> int:
    parsed = build_parser(args).parse_args(args)
    assert parsed.command == "api" and parsed.config == "/etc/syncworker/config.yaml"
    return listen_address(parsed.listen)[1]


def test_compose_api_and_the_upstream_that_notifies_it() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    api = services["api"]
    port = listen_port(api["command"])
    assert f"{port}:{port}" in api["ports"]
    assert api["environment"][TOKEN_ENV].startswith("${" + TOKEN_ENV)
    raw = services["upstream"]["environment"]["REGISTRY_NOTIFICATIONS_ENDPOINTS"]
    [endpoint] = yaml.safe_load(raw)
    url = urlsplit(endpoint["url"])
    assert (url.hostname, url.port, url.path) == ("api", port, WEBHOOK)
    # Pushers address the upstream as localhost:5000, so the events name the entry.
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "syncworker.yaml").read_text())
    [entry] = config["extensions"]["sync"]["registries"]
    assert parse_qs(url.query) == {"registry": [entry["name"]]}
    assert endpoint["headers"]["Authorization"] == ["Bearer ${" + TOKEN_ENV + ":-}"]


def kube_objects() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert "api.yaml" in kustomization["resources"]
    objects = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((KUBE / resource).read_text()):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def test_kube_api_deployment_and_service() -> None:
    objects = kube_objects()
    deployment = objects[("Deployment", "syncworker-api")]
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    [port] = container["ports"]
    assert listen_port(container["args"]) == port["containerPort"]
    [secret_ref] = container["envFrom"]
    secret = objects[("Secret", secret_ref["secretRef"]["name"])]["stringData"]
    assert TOKEN_ENV in secret and "SYNCWORKER_REDIS_URL" in secret
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "/readyz" in " ".join(container["readinessProbe"]["exec"]["command"])
    service = objects[("Service", "syncworker-api")]["spec"]
    assert service["selector"] == pod["metadata"]["labels"]
    assert service["ports"][0]["targetPort"] == port["name"]
