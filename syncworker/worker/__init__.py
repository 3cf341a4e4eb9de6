"""What runs inside Celery workers and beat: task policy, per-process state, the walk."""
