"""Public task names and the queues they are routed to.

Other services call the tasks by these names with ``send_task``; the names and their plain
string arguments are a stable interface.
"""

from __future__ import annotations

__all__ = [
    "CONFIG_ENV",
    "QUEUE_ONDEMAND",
    "QUEUE_REPO",
    "QUEUE_WALK",
    "ROUTES",
    "TASK_CHECK_REPO",
    "TASK_SWEEP",
    "TASK_SYNC_IMAGE",
    "TASK_SYNC_REPO",
    "TASK_SYNC_REPOS",
    "TASK_WALK",
]

#: The config file a worker or ``celery -A syncworker.celeryapp`` reads.
CONFIG_ENV = "SYNCWORKER_CONFIG"

TASK_WALK = "syncworker.walk_catalog"
TASK_SYNC_REPO = "syncworker.sync_repo"
TASK_SYNC_IMAGE = "syncworker.sync_image"
# Internal: a walk's repositories, several to a message (tasks.py).
TASK_SYNC_REPOS = "syncworker.sync_repos"
# `syncworker check` of one repository of the store (runs/storecheck.py).
TASK_CHECK_REPO = "syncworker.check_repo"
# Internal: re-sends what a stalled run lost (runs/sweep.py).
TASK_SWEEP = "syncworker.sweep_run"

# Separate queues so that a nightly mass run (thousands of sync_repo) never starves a
# walk's next page nor an on-demand request.
QUEUE_WALK = "syncworker.walk"
QUEUE_REPO = "syncworker.repo"
QUEUE_ONDEMAND = "syncworker.ondemand"
ROUTES = {
    TASK_WALK: {"queue": QUEUE_WALK},
    TASK_SWEEP: {"queue": QUEUE_WALK},
    TASK_SYNC_REPO: {"queue": QUEUE_REPO},
    TASK_SYNC_REPOS: {"queue": QUEUE_REPO},
    TASK_CHECK_REPO: {"queue": QUEUE_REPO},
    TASK_SYNC_IMAGE: {"queue": QUEUE_ONDEMAND},
}
