"""An upload handler that refuses files over the size limit while they stream in.

It writes to a temporary file chunk by chunk (never to memory) and stops as soon as the
running total passes the limit, or before the first byte when the request's declared
length is already too large; the rest of the body is read and discarded, not stored.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt, csrf_protect

# Multipart framing and the small form fields travel in the same body as the file.
MULTIPART_ALLOWANCE = 64 * 1024


class SizeLimitedUploadHandler(TemporaryFileUploadHandler):
    def __init__(self, request: HttpRequest | None = None, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.too_large = False

    def handle_raw_input(
        self,
        input_data: Any,
        META: Any,
        content_length: int,
        boundary: Any,
        encoding: str | None = None,
    ) -> None:
        if content_length and content_length > self.limit + MULTIPART_ALLOWANCE:
            self.too_large = True

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        if self.too_large:
            raise StopUpload(connection_reset=False)
        super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.too_large = True
            self.file.close()  # a temporary file: closing deletes what was written
            raise StopUpload(connection_reset=False)
        return super().receive_data_chunk(raw_data, start)


def size_limited_upload(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Decorate an upload view: files over `DATASET_MAX_BYTES` are refused while they stream
    in, and the view gets the handler as `size_limit` (its `too_large` says why the file is
    missing). The handler has to be installed before anything reads the body, CSRF's check
    included, so the outer view is CSRF-exempt and the view itself is CSRF-protected."""
    protected = csrf_protect(view)

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        handler = SizeLimitedUploadHandler(request, limit=settings.DATASET_MAX_BYTES)
        request.upload_handlers = [handler]
        return protected(request, *args, size_limit=handler, **kwargs)

    return wrapper
