"""The Celery side: task and queue names, Celery settings, retry policy, sending, the beat
schedule and the state each worker process builds once."""
