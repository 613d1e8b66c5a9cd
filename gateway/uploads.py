"""Uploads streamed to disk: the multipart body is parsed as it arrives (python-multipart) and the file
part written straight to a file, so an upload never sits whole in memory.

Limits are enforced as early as the request allows: a declared ``Content-Length`` over the limit is
refused before any of the body is read, the part's content type when its headers arrive, the size
while the data streams in. A refused or broken upload leaves no file behind.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

#: room for the multipart framing around the file (boundaries, part headers, other small fields)
FRAMING_BYTES = 64 * 1024
#: the form field that carries the video
FIELD = "file"


class UploadRejectedError(Exception):
    """The upload breaks a limit or the protocol: ``status`` and ``code`` for the error response."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Upload:
    path: Path
    size: int
    filename: str
    content_type: str


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str = ""
    content_type: str = ""
    handle: IO[bytes] | None = None


class _Receiver:
    """python-multipart callbacks: the ``file`` part goes to ``destination``, checked as it comes."""

    def __init__(self, destination: Path, limit: int, allowed_types: tuple[str, ...]) -> None:
        self.destination, self.limit, self.allowed_types = destination, limit, allowed_types
        self.part = _Part()
        self.header_field, self.header_value = bytearray(), bytearray()
        self.size, self.other_bytes, self.found = 0, 0, None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self.header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_end(self) -> None:
        self.part.headers[bytes(self.header_field).decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, disposition = parse_options_header(self.part.headers.get("content-disposition", b""))
        self.part.name = disposition.get(b"name", b"").decode("utf-8", "replace")
        self.part.filename = disposition.get(b"filename", b"").decode("utf-8", "replace")[:200]
        if self.part.name != FIELD:
            return  # another form field: ignored
        if self.found is not None:
            raise UploadRejectedError(400, "bad_request", f"more than one '{FIELD}' field")
        kind, _ = parse_options_header(self.part.headers.get("content-type", b"application/octet-stream"))
        self.part.content_type = kind.decode("latin-1").lower()
        if self.part.content_type not in self.allowed_types:
            raise UploadRejectedError(
                415,
                "unsupported_type",
                f"content type {self.part.content_type!r} is not a video or image type we accept",
            )
        self.part.handle = open(self.destination, "wb")  # noqa: SIM115 (closed in on_part_end or by receive)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.handle is None:  # another form field: counted, not kept
            self.other_bytes += end - start
            if self.other_bytes > FRAMING_BYTES:
                raise UploadRejectedError(400, "bad_request", "form fields other than the file are not expected")
            return
        self.size += end - start
        if self.size > self.limit:
            raise UploadRejectedError(413, "too_large", f"upload larger than the limit of {self.limit} bytes")
        self.part.handle.write(data[start:end])

    def on_part_end(self) -> None:
        if self.part.handle is not None:
            self.part.handle.close()
            self.found = Upload(self.destination, self.size, self.part.filename, self.part.content_type)
            self.part.handle = None

    def close(self) -> None:
        if self.part.handle is not None:
            self.part.handle.close()


async def receive_upload(request: Request, destination: Path, *, limit: int, allowed_types: tuple[str, ...]) -> Upload:
    """Stream the ``file`` field of a multipart request into ``destination`` (at most ``limit`` bytes).

    Raises :class:`UploadRejectedError` (nothing left at ``destination``) on a missing, oversized, empty or
    wrongly typed upload, or a body that is not multipart/form-data.
    """
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadRejectedError(400, "bad_request", f"send the video as multipart/form-data in a '{FIELD}' field")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + FRAMING_BYTES:
        raise UploadRejectedError(413, "too_large", f"upload larger than the limit of {limit} bytes")
    receiver = _Receiver(destination, limit, allowed_types)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        raise UploadRejectedError(400, "bad_request", "the upload was interrupted") from None
    except UploadRejectedError:
        raise
    except Exception as exc:  # malformed multipart framing
        raise UploadRejectedError(400, "bad_request", f"malformed multipart body: {type(exc).__name__}") from None
    finally:
        receiver.close()
        if receiver.found is None or receiver.found.size == 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(destination)
    if receiver.found is None:
        raise UploadRejectedError(400, "bad_request", f"no '{FIELD}' field in the form")
    if receiver.found.size == 0:
        raise UploadRejectedError(400, "empty_upload", "the uploaded file is empty")
    return receiver.found
