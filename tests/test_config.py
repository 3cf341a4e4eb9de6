"""Loading configuration: zot files unchanged, our additions, and every bad field named."""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncworker.config import REDIS_URL_ENV, load_config, parse_duration, validate
from syncworker.config.mirrorbuild import upstream
from syncworker.errors import ConfigError
from syncworker.oci import Platform
from syncworker.registry.auth import Credentials
from syncworker.registry.options import ClientOptions

# As zot's examples/config-sync.json, with other zot sections (http auth, search, ui,
# scrub, metrics, lint, trust) that must load untouched.
ZOT_CONFIG: dict[str, Any] = {
    "distSpecVersion": "1.1.1",
    "storage": {
        "rootDirectory": "/tmp/zot",
        "dedupe": True,
        "gc": True,
        "gcDelay": "1h",
        "gcInterval": "24h",
        "commit": False,
        "subPaths": {"/a": {"rootDirectory": "/tmp/zot1", "dedupe": False}},
        "retention": {"dryRun": False, "delay": "24h", "policies": []},
    },
    "http": {
        "address": "127.0.0.1",
        "port": "8080",
        "auth": {"htpasswd": {"path": "/etc/zot/htpasswd"}},
        "accessControl": {"repositories": {"**": {"anonymousPolicy": ["read"]}}},
    },
    "log": {"level": "debug", "output": "/tmp/zot.log"},
    "extensions": {
        "search": {"enable": True, "cve": {"updateInterval": "2h"}},
        "ui": {"enable": True},
        "scrub": {"enable": True, "interval": "24h"},
        "metrics": {"enable": True, "prometheus": {"path": "/metrics"}},
        "lint": {"enable": False, "mandatoryAnnotations": []},
        "trust": {"enable": True, "cosign": True, "notation": False},
        "sync": {
            "enable": True,
            "registries": [
                {
                    "urls": ["https://registry1:5000"],
                    "onDemand": False,
                    "pollInterval": "6h",
                    "tlsVerify": True,
                    "certDir": "/home/user/certs",
                    "maxRetries": 3,
                    "retryDelay": "5m",
                    "onlySigned": True,
                    "content": [
                        {"prefix": "/repo1/repo", "tags": {"regex": "4.*", "semver": True}},
                        {"prefix": "/repo2/repo", "destination": "/repo", "stripPrefix": True},
                        {"prefix": "/repo3/**"},
                        {"prefix": "/repo4/**", "tags": {"excludeRegex": ".*-(amd64|arm64)$"}},
                    ],
                },
                {
                    "urls": ["https://registry2:5000", "https://registry3:5000"],
                    "pollInterval": "12h",
                    "tlsVerify": False,
                    "onDemand": False,
                    "content": [{"prefix": "**", "tags": {"semver": True}}],
                },
                {
                    "urls": ["https://index.docker.io"],
                    "onDemand": True,
                    "tlsVerify": True,
                    "maxRetries": 5,
                    "retryDelay": "1s",
                    "maxRetryDelay": "30s",
                    "syncTimeout": "10m",
                    "reqConcurrent": 30,
                    "reqPerSec": 100,
                    "disableHTTP2": True,
                    "maxIdleConnsPerHost": 30,
                    "preserveDigest": True,
                    "syncLegacyCosignTags": False,
                    "manifestCheckInterval": "1m",
                },
            ],
        },
    },
}


def write(tmp_path: Path, data: Any, name: str = "config.json") -> Path:
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(data))
    else:
        path.write_text(yaml.safe_dump(data))
    return path


def zot(**sync_changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(ZOT_CONFIG)
    data["extensions"]["sync"].update(sync_changes)
    return data


def errors_of(tmp_path: Path, data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    return info.value.errors


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))


@pytest.mark.parametrize("name", ["config.json", "config.yaml"])
def test_zot_config_loads_unchanged(tmp_path: Path, name: str) -> None:
    config = load_config(write(tmp_path, ZOT_CONFIG, name))
    assert config.storage.root_directory == "/tmp/zot"
    assert config.storage.storage_driver is None
    assert [r.name for r in config.registries] == [
        "registry1:5000",
        "registry2:5000",
        "index.docker.io",
    ]
    first = config.registry("registry1:5000")
    assert first.poll_interval == timedelta(hours=6)
    assert first.retry_delay == timedelta(minutes=5)
    assert first.only_signed is True
    assert config.registries[1].urls == ["https://registry2:5000", "https://registry3:5000"]
    assert config.registries[1].tls_verify is False
    assert config.extensions is not None and config.extensions.search is not None
    assert config.http is not None and config.http["port"] == "8080"
    assert config.syncworker.concurrency == 8
    assert config.syncworker.blob_concurrency == 4
    assert config.syncworker.tag_concurrency == 4
    assert config.syncworker.layout_media_types == "preserve"
    assert config.syncworker.redis_url is None


def test_content_rules_from_config(tmp_path: Path) -> None:
    rules = load_config(write(tmp_path, ZOT_CONFIG)).registries[0].content_rules()
    assert rules.destination("repo2/repo") == "repo"
    assert rules.destination("repo3/a/b") == "repo3/a/b"
    assert rules.destination("elsewhere") is None
    assert rules.filter_tags("repo1/repo", ["4.1.0", "v14", "latest", "3.0"]) == ["4.1.0", "v14"]
    assert rules.filter_tags("repo4/x", ["1-amd64", "1"]) == ["1"]


def test_client_options(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ZOT_CONFIG))
    opts = config.registries[0].client_options()
    assert opts == ClientOptions(
        tls_verify=True, cert_dir="/home/user/certs", max_retries=3, retry_delay=300.0
    )
    assert config.registries[1].client_options() == ClientOptions(tls_verify=False)
    assert config.registries[2].client_options().pool_size == 30


def test_the_connection_pool_holds_every_thread_that_shares_a_client(tmp_path: Path) -> None:
    data = zot()
    data["syncworker"] = {"concurrency": 3, "blobConcurrency": 5, "tagConcurrency": 2}
    config = load_config(write(tmp_path, data))
    assert upstream(config, config.registries[0]).options.pool_size == 3 * 5 + 3 * 2
    # zot's maxIdleConnsPerHost, when given, still decides.
    assert upstream(config, config.registries[2]).options.pool_size == 30


def test_our_additions(tmp_path: Path) -> None:
    data = zot()
    data["extensions"]["sync"]["registries"][0].update(
        {
            "name": "hub",
            "repos": ["library/alpine", "library/busybox"],
            "platforms": ["linux/amd64", "linux/arm64/v8"],
            "schedule": "*/15 * * * *",
        }
    )
    data["syncworker"] = {
        "concurrency": 2,
        "blobConcurrency": 3,
        "tagConcurrency": 16,
        "layoutMediaTypes": "oci",
        "redis": "redis://:secret@127.0.0.1:6379/0",
        "celery": {"broker_url": "amqp://guest:guest@127.0.0.1:5672//"},
        "runsKept": 5,
    }
    config = load_config(write(tmp_path, data, "config.yaml"))
    hub = config.registry("hub")
    assert hub.repos == ["library/alpine", "library/busybox"]
    assert hub.platforms == [Platform("linux", "amd64"), Platform("linux", "arm64", "v8")]
    assert hub.schedule == "*/15 * * * *"
    assert config.syncworker.concurrency == 2
    assert config.syncworker.blob_concurrency == 3
    assert config.syncworker.tag_concurrency == 16
    assert config.syncworker.layout_media_types == "oci"
    assert config.syncworker.redis_url == "redis://:secret@127.0.0.1:6379/0"
    assert config.syncworker.celery["broker_url"].startswith("amqp://")
    assert config.syncworker.runs_kept == 5


def test_keys_match_in_any_case_as_zot_does(tmp_path: Path) -> None:
    data = {
        "storage": {"rootdirectory": "/srv"},
        "extensions": {"sync": {"registries": [{"URLs": ["http://h:5000"], "TLSVerify": False}]}},
    }
    config = load_config(write(tmp_path, data))
    assert config.storage.root_directory == "/srv"
    assert config.registries[0].tls_verify is False


def test_s3_storage_driver(tmp_path: Path) -> None:
    data = {
        "storage": {
            "rootDirectory": "/mirror",
            "storageDriver": {
                "name": "s3",
                "rootdirectory": "/mirror",
                "region": "us-east-1",
                "regionendpoint": "127.0.0.1:9000",
                "bucket": "mirror",
                "secure": False,
                "skipverify": False,
                "forcepathstyle": True,
                "accesskey": "AKIAEXAMPLE",
                "secretkey": "s3-secret-value",
                "v4auth": True,  # a distribution parameter we do not use: ignored
            },
        }
    }
    config = load_config(write(tmp_path, data, "config.yaml"))
    driver = config.storage.storage_driver
    assert driver is not None
    assert (driver.bucket, driver.root_directory, driver.region) == (
        "mirror",
        "/mirror",
        "us-east-1",
    )
    assert driver.endpoint_url == "http://127.0.0.1:9000"
    assert driver.force_path_style is True and driver.skip_verify is False
    assert driver.secret_key is not None
    assert driver.secret_key.get_secret_value() == "s3-secret-value"
    assert "s3-secret-value" not in repr(config) and "s3-secret-value" not in str(config)


def test_no_secret_in_repr(tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"registry1:5000": {"username": "u", "password": "pw-file"}}))
    data = zot(credentialsFile=str(creds))
    data["syncworker"] = {
        "redis": "redis://:pw-redis@127.0.0.1:6379/0",
        "celery": {"broker_url": "amqp://u:pw-celery@127.0.0.1//"},
    }
    data["http"]["auth"]["ldap"] = {"bindPassword": "pw-ldap"}
    config = load_config(write(tmp_path, data))
    found = config.credentials_for(config.registries[0])
    text = repr(config) + str(config) + repr(found) + repr(config.syncworker)
    for secret in ("pw-file", "pw-redis", "pw-celery", "pw-ldap"):
        assert secret not in text


def test_redis_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = zot()
    data["syncworker"] = {"redis": "redis://file:6379/0"}
    monkeypatch.setenv(REDIS_URL_ENV, "redis://127.0.0.1:6379/3")
    assert load_config(write(tmp_path, data)).syncworker.redis_url == "redis://127.0.0.1:6379/3"
    assert load_config(write(tmp_path, zot())).syncworker.redis_url == "redis://127.0.0.1:6379/3"


def test_credentials_file(tmp_path: Path) -> None:
    creds = tmp_path / "sync-auth.json"
    creds.write_text(
        json.dumps(
            {
                "registry3:5000": {"username": "user3", "password": "pass3"},
                "registry1:5000": {"Username": "user1", "Password": "pass1"},
            }
        )
    )
    config = load_config(write(tmp_path, zot(credentialsFile=str(creds))))
    assert config.credentials_for(config.registries[0]) == {
        "https://registry1:5000": Credentials("user1", "pass1")
    }
    # Per URL: registry2 has no entry, so the failover URL registry3's login stays its own.
    assert config.credentials_for(config.registries[1]) == {
        "https://registry3:5000": Credentials("user3", "pass3")
    }
    assert config.credentials_for(config.registries[2]) == {}


def test_credentials_file_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "auth.json").write_text(
        json.dumps({"registry1:5000": {"username": "a", "password": "b"}})
    )
    config = load_config(write(tmp_path, zot(credentialsFile="auth.json")))
    assert config.credentials_for(config.registries[0]) == {
        "https://registry1:5000": Credentials("a", "b")
    }


def test_docker_config_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = tmp_path / "docker"
    docker.mkdir()
    auth = base64.b64encode(b"hubuser:hub:pass").decode()
    (docker / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": auth},
                    "registry2:5000": {"username": "u2", "password": "p2"},
                },
            }
        )
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"registry2:5000": {"username": "file", "password": "wins"}}))
    config = load_config(write(tmp_path, ZOT_CONFIG))
    hub = "https://index.docker.io"
    assert config.credentials_for(config.registries[2]) == {hub: Credentials("hubuser", "hub:pass")}
    assert config.credentials_for(config.registries[1]) == {
        "https://registry2:5000": Credentials("u2", "p2")
    }
    assert config.credentials_for(config.registries[0]) == {}
    # zot's credentials file comes first.
    config = load_config(write(tmp_path, zot(credentialsFile=str(creds))))
    assert config.credentials_for(config.registries[1]) == {
        "https://registry2:5000": Credentials("file", "wins")
    }


def test_unknown_registry_name(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ZOT_CONFIG))
    with pytest.raises(ConfigError, match="no registry named 'nope'"):
        config.registry("nope")


def _registry0(**changes: Any) -> dict[str, Any]:
    data = zot()
    data["extensions"]["sync"]["registries"][0].update(changes)
    return data


R0 = "extensions.sync.registries[0]."
BAD_FIELDS = [
    (
        _registry0(content=[{"prefix": "a"}, {"prefix": "b", "tags": {"regex": "[*"}}]),
        R0 + "content[1].tags.regex",
        "invalid regular expression: missing ]: [*",
    ),
    (
        _registry0(content=[{"prefix": "a", "tags": {"excludeRegex": "(?<!-)rc"}}]),
        R0 + "content[0].tags.excludeRegex",
        "invalid regular expression: invalid perl operator: (?<!",
    ),
    (_registry0(tlsverfy=True), R0 + "tlsverfy", "unknown key"),
    (
        _registry0(content=[{"prefix": "a", "tags": {"semvr": True}}]),
        R0 + "content[0].tags.semvr",
        "unknown key",
    ),
    (zot(enabled=True), "extensions.sync.enabled", "unknown key"),
    (
        _registry0(pollInterval="6 hours"),
        R0 + "pollInterval",
        "invalid duration",
    ),
    (
        _registry0(retryDelay=60),
        R0 + "retryDelay",
        "a duration is a string",
    ),
    (_registry0(retryDelay="-5s"), R0 + "retryDelay", "negative"),
    (_registry0(schedule="every hour"), R0 + "schedule", "invalid cron"),
    (_registry0(schedule="0 0 * * * *"), R0 + "schedule", "invalid cron"),
    (_registry0(platforms=["linux"]), R0 + "platforms[0]", "not os/arch"),
    (
        _registry0(repos=["ok", "Bad/../x"]),
        R0 + "repos[1]",
        "invalid repository",
    ),
    (_registry0(urls=[]), R0 + "urls", "at least 1"),
    (
        _registry0(urls=["registry1:5000"]),
        R0 + "urls",
        "http:// or https://",
    ),
    (
        _registry0(content=[{"prefix": "a/[b"}]),
        R0 + "content[0].prefix",
        "invalid glob",
    ),
    (
        _registry0(content=[{"tags": {}}]),
        R0 + "content[0].prefix",
        "required",
    ),
    (
        _registry0(content=[{"prefix": "a", "destination": "/Up/Per"}]),
        R0 + "content[0].destination",
        "invalid repository name",
    ),
    (
        _registry0(credentialHelper="gcp"),
        R0 + "credentialHelper",
        "not supported",
    ),
    (
        _registry0(maxRetries=-1),
        R0 + "maxRetries",
        "greater than or equal to 0",
    ),
    (_registry0(name="a b"), R0 + "name", "may hold only"),
    ({**ZOT_CONFIG, "syncworker": {"concurency": 2}}, "syncworker.concurency", "unknown key"),
    (
        {**ZOT_CONFIG, "syncworker": {"concurrency": 0}},
        "syncworker.concurrency",
        "greater than or equal to 1",
    ),
    (
        {**ZOT_CONFIG, "syncworker": {"tagConcurrency": 0}},
        "syncworker.tagConcurrency",
        "greater than or equal to 1",
    ),
    (
        {**ZOT_CONFIG, "syncworker": {"tagConcurrency": 65}},
        "syncworker.tagConcurrency",
        "less than or equal to 64",
    ),
    (
        {**ZOT_CONFIG, "syncworker": {"layoutMediaTypes": "docker"}},
        "syncworker.layoutMediaTypes",
        "'preserve' or 'oci'",
    ),
    ({**ZOT_CONFIG, "syncworker": {"redis": "http://x"}}, "syncworker.redis", "redis://"),
    (
        {**ZOT_CONFIG, "syncworker": {"credentialHelperTimeout": "0s"}},
        "syncworker.credentialHelperTimeout",
        "must be a positive duration",
    ),
    (
        {**ZOT_CONFIG, "syncworker": {"serve": {"onDemandTimeout": "500ns"}}},
        "syncworker.serve.onDemandTimeout",
        "must be a positive duration",
    ),
    (
        {**ZOT_CONFIG, "syncworker": {"walkAhead": 10}},
        "syncworker.walkAhead",
        "must be at least reposPerTask (16)",
    ),
    (
        {**ZOT_CONFIG, "syncworker": {"walkAhead": 10, "reposPerTask": 11}},
        "syncworker.walkAhead",
        "must be at least reposPerTask (11)",
    ),
    (
        {**ZOT_CONFIG, "syncworker": {"lockTtl": "500ms"}},
        "syncworker.lockTtl",
        "must be at least 1s",
    ),
    ({**ZOT_CONFIG, "extension": {}}, "extension", "unknown key"),
    ({"extensions": {}}, "storage", "required"),
    (
        {"storage": {"rootDirectory": "/x", "storageDriver": {"name": "gcs", "bucket": "b"}}},
        "storage.storageDriver.name",
        "'s3'",
    ),
]


@pytest.mark.parametrize(("data", "path", "message"), BAD_FIELDS)
def test_bad_field_is_named(tmp_path: Path, data: dict[str, Any], path: str, message: str) -> None:
    problems = errors_of(tmp_path, data)
    assert [p for p, _ in problems] == [path], problems
    assert message in problems[0][1]
    assert str(ConfigError(*problems[0])).startswith(f"{path}: ")


def test_every_bad_field_at_once(tmp_path: Path) -> None:
    data = _registry0(tlsverfy=True, pollInterval="soon", platforms=["linux/amd64", "x"])
    data["syncworker"] = {"blobConcurrency": "many"}
    problems = errors_of(tmp_path, data)
    assert sorted(p for p, _ in problems) == [
        R0 + "platforms[1]",
        R0 + "pollInterval",
        R0 + "tlsverfy",
        "syncworker.blobConcurrency",
    ]
    lines = validate(write(tmp_path, data))
    assert len(lines) == 4 and all(": " in line for line in lines)


def test_duplicate_registry_names(tmp_path: Path) -> None:
    data = zot()
    data["extensions"]["sync"]["registries"].append({"urls": ["http://registry1:5000"]})
    problems = errors_of(tmp_path, data)
    assert problems == [
        (
            "extensions.sync.registries[3].name",
            "duplicate registry name 'registry1:5000' (as registries[0])",
        )
    ]


def test_credentials_file_problems(tmp_path: Path) -> None:
    missing = errors_of(tmp_path, zot(credentialsFile=str(tmp_path / "absent.json")))
    assert missing[0][0] == "extensions.sync.credentialsFile"
    assert "cannot read" in missing[0][1]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"h:1": {"username": "u", "password": 5}}))
    problems = errors_of(tmp_path, zot(credentialsFile=str(bad)))
    assert problems[0][0] == "extensions.sync.credentialsFile"
    assert "'h:1'" in problems[0][1]


def test_error_never_echoes_a_secret(tmp_path: Path) -> None:
    data = {"storage": {"rootDirectory": "/x"}, "syncworker": {"redis": "http://:hunter2@h"}}
    (problem,) = errors_of(tmp_path, data)
    assert "hunter2" not in problem[1]


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listed)


def test_minimal_yaml(tmp_path: Path) -> None:
    path = tmp_path / "mirror.yaml"
    path.write_text(
        "storage: {rootDirectory: /srv/mirror}\n"
        "extensions:\n"
        "  sync:\n"
        "    registries:\n"
        "      - urls: [http://127.0.0.1:5000]\n"
    )
    config = load_config(path)
    (reg,) = config.registries
    assert reg.name == "127.0.0.1:5000"
    assert reg.content_rules().destination("a/b") == "a/b"
    assert validate(path) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6h", timedelta(hours=6)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("1m30.5s", timedelta(seconds=90.5)),
        ("0", timedelta(0)),
        (".5s", timedelta(milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
        ("2us", timedelta(microseconds=2)),
        ("3\u00b5s", timedelta(microseconds=3)),
        ("1h0m0s", timedelta(hours=1)),
    ],
)
def test_go_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "6", "h", "1x", "-1s", "1h 30m", "1.2.3s", "1d"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_example_configs_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES.parent)
    for path in sorted(EXAMPLES.glob("*.*")):
        assert validate(path) == [], path.name


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.*")))
def test_every_content_rule_of_an_example_takes_a_listed_repository(name: str) -> None:
    """Where an example lists its ``repos`` (no catalog walk), a rule none of them reaches
    (the first matching rule wins) would never apply: a reader copying it gets nothing."""
    for registry in load_config(EXAMPLES / name).registries:
        if not registry.repos:
            continue
        rules = registry.content_rules()
        used = {id(rules.match(repo)) for repo in registry.repos}
        unused = [rule.prefix for rule in rules.rules if id(rule) not in used]
        assert unused == [], f"{name} {registry.name}: no repository of repos reaches {unused}"


def test_example_registries_fill_distinct_destinations() -> None:
    # Both entries of the example take library/alpine; one destination holds one source, so a
    # shared one would leave whichever registry syncs second failing on every run.
    registries = load_config(EXAMPLES / "mirror.yaml").registries
    targets = [reg.content_rules().destination("library/alpine") for reg in registries]
    assert len(targets) == 2 and None not in targets and len(set(targets)) == 2, targets


def test_same_key_in_two_spellings_is_refused(tmp_path: Path) -> None:
    problems = errors_of(tmp_path, _registry0(TLSVerify=False))
    assert problems == [
        ("extensions.sync.registries[0]", "key 'tlsVerify' is given twice (keys match in any case)")
    ]


def test_zero_poll_interval_means_never(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, _registry0(pollInterval="0s")))
    assert config.registries[0].poll_interval is None


def test_cron_that_beat_cannot_run(tmp_path: Path) -> None:
    for schedule, message in [("0 0 L * *", "L, W, # or ?"), ("0 0 * * 7", "Sunday as 0")]:
        (problem,) = errors_of(tmp_path, _registry0(schedule=schedule))
        assert problem[0] == R0 + "schedule" and message in problem[1]


def test_url_with_credentials_refused_without_echo(tmp_path: Path) -> None:
    (problem,) = errors_of(tmp_path, _registry0(urls=["https://u:hunter2@registry1:5000"]))
    assert problem[0] == R0 + "urls" and "credentials" in problem[1]
    assert "hunter2" not in problem[1]


def test_a_url_ending_in_v2_is_refused_with_the_way_out(tmp_path: Path) -> None:
    """The client adds /v2/ to every request: a URL given with it would ask /v2/v2/."""
    for url in ("http://registry1:5000/v2", "https://mirror.example/v2/"):
        (problem,) = errors_of(tmp_path, _registry0(urls=[url]))
        message = f"{url!r} ends in /v2: give the registry's base URL without it"
        assert problem == (R0 + "urls", message)
    assert load_config(write(tmp_path, _registry0(urls=["https://host/v2mirror"]))).registries


def test_empty_regex_keeps_every_tag(tmp_path: Path) -> None:
    data = _registry0(content=[{"prefix": "**", "tags": {"regex": "", "excludeRegex": ""}}])
    rules = load_config(write(tmp_path, data)).registries[0].content_rules()
    assert rules.filter_tags("a", ["v1", "latest"]) == ["v1", "latest"]


def test_zot_storage_keys_we_do_not_use_are_ignored(tmp_path: Path) -> None:
    data = zot()
    data["storage"].update({"remoteCache": True, "gcTimeWindow": "01:00-08:00", "maxRepos": 5})
    assert load_config(write(tmp_path, data)).storage.root_directory == "/tmp/zot"


def test_null_list_means_empty(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "storage: {rootDirectory: /srv}\n"
        "syncworker:\n"
        "extensions:\n"
        "  sync:\n"
        "    registries:\n"
        "      - urls: [http://h:5000]\n"
        "        content:\n"
        "          # - prefix: lib/**\n"
    )
    config = load_config(path)
    assert config.registries[0].content == []
    assert config.syncworker.concurrency == 8
