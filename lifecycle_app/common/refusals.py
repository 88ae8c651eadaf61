"""Expected refusals are not errors.

A viewer who presses a control they cannot use gets a 403 (PermissionDenied from the access
helper). Django logs every PermissionDenied on the `django.request` logger with the exception
attached, so each refusal printed its traceback (twice under DEBUG: Django's own console
handler and the root one). That is a person being told no, not a fault: this filter keeps
one line at INFO and drops the traceback. Installed on that logger in AppConfig.ready, so it
holds whatever LOGGING says.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class ExpectedRefusalFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, PermissionDenied):
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = logging.getLevelName(logging.INFO)
        return True


def install() -> None:
    logger = logging.getLogger("django.request")
    if not any(isinstance(f, ExpectedRefusalFilter) for f in logger.filters):
        logger.addFilter(ExpectedRefusalFilter())
