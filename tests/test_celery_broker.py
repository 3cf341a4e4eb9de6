"""The Redis broker's transport (worker/redisbroker.py): messages taken and acknowledged
through one redis-py client per connection pool, against a real Redis; other brokers keep
kombu's own transport."""

from __future__ import annotations

from pathlib import Path

import yaml

from syncworker.celeryapp import create_app
from syncworker.config import load_config
from syncworker.worker.redisbroker import Channel
from syncworker.worker.settings import celery_settings


def _config(tmp_path: Path, redis_url: str, celery: dict[str, str] | None = None) -> Path:
    data = {
        "storage": {"rootDirectory": str(tmp_path / "store")},
        "syncworker": {"redis": redis_url, "celery": celery or {}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_channel_takes_and_acks_messages_through_one_client(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    app = create_app(load_config(_config(tmp_path, redis_url)))
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        queue = connection.SimpleQueue(f"{redis_prefix}queue")
        for number in range(3):
            queue.put({"n": number})
        client = channel._create_client()
        got = []
        for _ in range(3):
            message = queue.get(timeout=10)  # kept unacknowledged: kombu's QoS.append
            got.append(message.payload["n"])
            message.ack()  # removed from the unacknowledged index: QoS.ack
        assert sorted(got) == [0, 1, 2]
        assert channel._create_client() is client
        assert channel.client.hlen(channel.unacked_key) == 0  # every ack landed
        channel._disconnect_pools()  # what kombu does after a lost connection
        assert channel._create_client() is not client  # a client of the new pool
        queue.close()


def test_other_brokers_keep_kombus_transport(tmp_path: Path) -> None:
    amqp = {"broker_url": "amqp://guest@rabbit:5672//"}
    settings = celery_settings(load_config(_config(tmp_path, "redis://r:6379/1", amqp)))
    assert settings.get("broker_transport") is None
    settings = celery_settings(load_config(_config(tmp_path, "rediss://r:6380/1")))
    assert settings["broker_transport"] == "syncworker.worker.redisbroker:Transport"
