from __future__ import annotations


class UserFacingError(Exception):
    """An error whose message is written for the person who started the job.

    Tasks show its text as-is; any other exception is reported with its type and
    the traceback is kept for the developers.
    """


class ModelNotAvailable(UserFacingError):
    pass


class GenerationError(UserFacingError):
    pass


class JobInterrupted(Exception):
    """Raised by a job's own bookkeeping (a callback such as `should_cancel` or
    `on_batch`): the job must stop now for a reason outside the input (its claim was
    superseded, the database is unreachable). The ML core never treats it as a bad row
    or a bad candidate: it lets it propagate."""
