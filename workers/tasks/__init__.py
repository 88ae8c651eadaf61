"""Celery tasks, one module per job kind over a shared base (base.py).

workers/celery.py lists every module here in the app's `include`, so a worker registers
all of them at start-up. Task names ("jobs.generate", ...) do not depend on the module.
"""
