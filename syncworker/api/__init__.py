"""``syncworker api``: the HTTP front door (registry webhooks, sync requests, run status) that
sends the public Celery tasks. Imported only by that command: FastAPI loads slowly."""
