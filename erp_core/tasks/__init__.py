"""Background work: Celery app factory, tenant-aware tasks, periodic fan-out."""
