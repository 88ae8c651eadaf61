"""An upload handler that refuses files over the size limit while they stream in.

It writes to a temporary file chunk by chunk (never to memory) and stops as soon as the
running total passes the limit, or before the first byte when the request's declared
length is already too large; the rest of the body is read and discarded, not stored.
"""

from __future__ import annotations

from typing import Any

from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.http import HttpRequest

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
