"""A walk sends its repositories to workers several to a message (``reposPerTask``,
worker/repobatch.py), and each is still synced and counted as if it were alone: a worker
killed in the middle of a batch costs that repository only, and a batch past its time sends
the rest on. Real workers, real Redis, the harness of test_celery_e2e.py (catalog pages of
five repositories: five batches)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from syncworker.celeryapp import create_app
from syncworker.config import load_config
from syncworker.worker.policy import MAX_DELIVERIES
from syncworker.worker.state import close_state
from syncworker.worker.tasknames import QUEUE_REPO, TASK_SYNC_REPO, TASK_SYNC_REPOS
from tests.support.cluster import (
    FAST_RESTORE,
    REGISTRY,
    REPOS,
    Cluster,
    cluster,
    persistent_redis,
    queued_args,
    queued_task,
    sync_repo_runs,
    trigger,
    upstream,
    wait_finished,
    wait_for,
)
from tests.support.corpus import Corpus
from tests.support.faults import KILL_ENV, SLOW_ENV, SLOW_SECONDS_ENV
from tests.support.registry_server import RegistryServer
from tests.test_celery_faults import FAULTS, POOL_PROCESS_KILLED

__all__ = ["cluster", "persistent_redis", "upstream"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow

# The time limits of the tests that cross them: well above what a message of five
# repositories takes on a loaded box.
LIMIT = 12


def keep_sweep_out(cluster: Cluster, **celery: Any) -> None:
    """No sweep within the test: its interval is kept under half the visibility timeout;
    ``celery``: more Celery settings."""
    cluster.sweep_seconds = 300
    transport = {"visibility_timeout": 600, **FAST_RESTORE}
    cluster.settings["celery"] = {"broker_transport_options": transport, **celery}
    cluster.write_config()


def test_a_worker_killed_in_the_middle_of_a_batch_costs_that_repository_only(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    """The batch of the first page is delivered again after each kill: the two repositories
    counted before the first kill are not synced again, the one that kills its worker is
    given up after MAX_DELIVERIES starts, and the two after it are synced once."""
    corpus = upstream[1]
    killer = corpus.repositories[2]
    keep_sweep_out(cluster)  # redelivery alone, no sweep resending the batch's rest
    cluster.extra_env[KILL_ENV] = killer
    cluster.worker("w1", *FAULTS)
    run_id, _ = trigger(cluster)

    status = wait_finished(cluster.coord(), run_id)
    assert (status.total, status.done, status.counters["repos_failed"]) == (REPOS, REPOS, 1)
    [failure] = status.failures
    assert failure.repo == killer and "times without finishing" in failure.reason
    others = [repo for repo in corpus.repositories if repo != killer]
    assert sync_repo_runs(cluster, ["w1"], others) == dict.fromkeys(others, 1)
    assert len(POOL_PROCESS_KILLED.findall(cluster.log("w1"))) == MAX_DELIVERIES


def test_a_repository_another_worker_holds_goes_to_a_message_of_its_own(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    """Its lock held elsewhere past BATCH_REPO_WAIT, the batch's second repository is sent
    on its own (the lock's retry delay later) and the batch goes on; once the lock is given
    back, that message syncs it."""
    corpus = upstream[1]
    busy = corpus.repositories[1]
    keep_sweep_out(cluster)
    coord = cluster.coord()
    with coord.repo_lock(busy, blocking_timeout=0):
        cluster.worker("w1")
        run_id, _ = trigger(cluster)
        wait_for("the hand-off", lambda: f"{busy}, {run_id}): " in cluster.log("w1"))
        others = [repo for repo in corpus.repositories if repo != busy]
        assert busy not in sync_repo_runs(cluster, ["w1"], others)
    status = wait_finished(coord, run_id)
    assert (status.total, status.done, status.failures) == (REPOS, REPOS, [])
    assert sync_repo_runs(cluster, ["w1"], corpus.repositories) == dict.fromkeys(
        corpus.repositories, 1
    )
    handed = re.findall(
        rf"sync_repo\({REGISTRY}, {busy}, {run_id}\): (.*); sent on its own", cluster.log("w1")
    )
    assert len(handed) == 1 and "held by another worker (waited 1s)" in handed[0], handed


def test_a_batch_past_its_time_sends_the_rest_on_as_two_messages(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    """The first repository of the first batch takes 6 s: past the batch's 5 s, its four
    others go on as two messages of two, which the worker's two processes take."""
    corpus = upstream[1]
    keep_sweep_out(cluster)  # a sweep would send the waiting four again on its own
    cluster.extra_env[SLOW_ENV] = corpus.repositories[0]
    cluster.worker("w1", *FAULTS, "--concurrency", "2")
    run_id, _ = trigger(cluster)

    status = wait_finished(cluster.coord(), run_id)
    assert (status.total, status.done, status.failures) == (REPOS, REPOS, [])
    # The line of the first batch (on a loaded box another batch may be slow too).
    first = rf"syncworker\.sync_repos\({REGISTRY}, \[{corpus.repositories[1]} and 3 more\]"
    sent_on = re.findall(
        rf"{first}, {run_id}\): over 5s, the rest sent on as (\d+) messages", cluster.log("w1")
    )
    assert sent_on == ["2"]
    assert sync_repo_runs(cluster, ["w1"], corpus.repositories) == dict.fromkeys(
        corpus.repositories, 1
    )


def slow_first_repository_fails(
    cluster: Cluster, corpus: Corpus, reason: str, **limits: Any
) -> str:
    """Run a walk whose first repository sleeps 60 s under the Celery time ``limits``; check
    that the run ends with that repository its one failure (its reason starting with
    ``reason``) and every other repository synced once; the worker's log."""
    slow = corpus.repositories[0]
    keep_sweep_out(cluster, **limits)
    cluster.extra_env.update({SLOW_ENV: slow, SLOW_SECONDS_ENV: str(5 * LIMIT)})
    cluster.worker("w1", *FAULTS)
    run_id, _ = trigger(cluster)

    status = wait_finished(cluster.coord(), run_id)
    assert (status.total, status.done, status.counters["repos_failed"]) == (REPOS, REPOS, 1)
    [failure] = status.failures
    assert failure.repo == slow and failure.reason.startswith(reason), failure
    others = [repo for repo in corpus.repositories if repo != slow]
    assert sync_repo_runs(cluster, ["w1"], others) == dict.fromkeys(others, 1)
    return cluster.log("w1")


def test_the_soft_time_limit_in_a_batch_fails_that_repository_and_sends_the_rest_on(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    """As alone: the repository the soft limit strikes is counted failed, not tried again;
    the four after it in its batch go on and are synced once. The limit (12 s) is far
    above what any other message takes, even on a loaded box; the slow one sleeps 60 s."""
    limits = {"task_soft_time_limit": LIMIT, "task_time_limit": 10 * LIMIT}
    log = slow_first_repository_fails(cluster, upstream[1], "SoftTimeLimitExceeded", **limits)
    assert "out of time, the rest sent on as 2 messages" in log


def test_the_hard_time_limit_in_a_batch_sends_each_repository_left_on_its_own(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    """The limit (12 s) kills the process in the batch's first repository, which sleeps
    60 s: the batch gives the five up to messages of their own; that one meets the limit
    again alone and is counted failed, the four others are synced once."""
    limits = {"task_soft_time_limit": None, "task_time_limit": LIMIT}
    log = slow_first_repository_fails(cluster, upstream[1], "TimeLimitExceeded", **limits)
    hard = re.findall(r"Hard time limit \(\S+\) exceeded for syncworker\.(sync_repos?)\[", log)
    assert hard == ["sync_repos", "sync_repo"], hard


def test_a_batch_given_up_sends_on_their_own_only_the_repositories_its_run_has_not_counted(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    """What Celery calls when a batch fails as a whole (its hard time limit): in this
    process, against the cluster's Redis, with no worker to take what it sends. Celery
    calls it in the worker's main process, which syncs nothing: it needs Redis alone, so
    it works where the store cannot even be opened (its root under a regular file here)."""
    (cluster.workdir / "a-file").write_text("")
    cluster.store = cluster.workdir / "a-file" / "store"
    cluster.write_config()
    first, second, third = upstream[1].repositories[:3]
    coord = cluster.coord()
    run_id = coord.start_run(REGISTRY)
    coord.incr(run_id, once_for=first, repos_done=1)
    app = create_app(load_config(str(cluster.config_path)))
    try:
        result = app.tasks[TASK_SYNC_REPOS].give_up(
            (REGISTRY, [first, second, third], run_id), {}, "TimeLimitExceeded: 2"
        )
    finally:
        close_state()
    assert result["failures"] == ["TimeLimitExceeded: 2"]
    queued = coord.client.lrange(QUEUE_REPO, 0, -1)
    assert sorted((queued_task(raw), queued_args(raw)) for raw in queued) == [
        (TASK_SYNC_REPO, [REGISTRY, second, run_id]),
        (TASK_SYNC_REPO, [REGISTRY, third, run_id]),
    ]
