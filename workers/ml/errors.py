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
