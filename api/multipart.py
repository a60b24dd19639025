"""Upload bodies read as they stream, with every cap applied on the way in.

Starlette parses a whole multipart body (and spools every file, up to 1,000 of them)
before a route runs, so a 200 MB file is only refused after it arrived. Here the parts
are counted when their headers arrive, before any byte of them is kept, and each file is
counted as it streams and cut at DOCQA_API__MAX_UPLOAD_MB. What is kept lives in spooled
temporary files (memory up to 1 MiB, then an anonymous temporary file), all closed, and
so gone, when the request ends or fails.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from docqa.errors import DocqaError, FileTooLarge, UnsupportedFileType

SPOOL_BYTES = 1 << 20
FIELD_BYTES = 64 << 10  # a plain form field (not a file) is never bigger than this


class InvalidUpload(DocqaError):
    """The body is multipart, but not an upload docqa understands (422, as a JSON body
    failing validation)."""

    status_code = 422


MULTIPART_HINT = (
    "upload files as multipart/form-data with one or more `files` parts, e.g. "
    "curl -F files=@report.pdf .../v1/documents"
)


@dataclass
class UploadPart:
    filename: str | None
    stream: SpooledTemporaryFile[bytes]
    size: int = 0


@dataclass
class UploadForm:
    """The files of an upload (`files` parts) and its plain fields, kept until `close`."""

    files: list[UploadPart] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        for part in self.files:
            part.stream.close()


class _Reader:
    def __init__(self, charset: str, *, max_files: int, max_file_bytes: int, max_mb: float):
        self.charset = charset
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.max_mb = max_mb
        self.form = UploadForm()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._file: UploadPart | None = None
        self._field = bytearray()

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode(self.charset)
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def on_part_begin(self) -> None:
        self._disposition, self._file, self._field = b"", None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = self._decode(options.get(b"name", b""))
        if b"filename" not in options:
            return
        if self._name != "files":
            raise InvalidUpload(
                f"unexpected file part {self._name!r}: send each file as a `files` part",
                param="files",
            )
        if not options[b"filename"].strip():
            raise InvalidUpload(
                "a `files` part has no file name; every uploaded file needs one", param="files"
            )
        if len(self.form.files) >= self.max_files:
            raise DocqaError(
                f"more than {self.max_files} files in one upload "
                "(DOCQA_API__MAX_FILES_PER_UPLOAD); send them in several requests",
                param="files",
            )
        self._file = UploadPart(
            self._decode(options[b"filename"]), SpooledTemporaryFile(max_size=SPOOL_BYTES)
        )
        self.form.files.append(self._file)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        part = self._file
        if part is None:
            if len(self._field) + len(chunk) > FIELD_BYTES:
                raise DocqaError(f"form field {self._name!r} is too long", param=self._name)
            self._field.extend(chunk)
            return
        part.size += len(chunk)
        if part.size > self.max_file_bytes:
            raise FileTooLarge(
                f"{part.filename!r} is over the {self.max_mb:g} MiB upload limit "
                "(DOCQA_API__MAX_UPLOAD_MB)",
                param="files",
            )
        part.stream.write(chunk)

    def on_part_end(self) -> None:
        if self._file is None and self._name:
            self.form.fields[self._name] = self._decode(bytes(self._field))


async def read_upload(request: Request, *, max_files: int, max_mb: float) -> UploadForm:
    """The upload's parts, read as they stream in; the caller closes the form.

    :raises UnsupportedFileType: (415) not a multipart body.
    :raises FileTooLarge: (413) a file over `max_mb`, found while it streams.
    :raises DocqaError: (400) too many files, a malformed body.
    """
    content_type = request.headers.get("content-type", "")
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise UnsupportedFileType(MULTIPART_HINT, param="files")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "utf-8"
    reader = _Reader(
        charset, max_files=max_files, max_file_bytes=int(max_mb * (1 << 20)), max_mb=max_mb
    )
    callbacks: Any = {
        name: getattr(reader, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    parser = MultipartParser(params[b"boundary"], callbacks)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except DocqaError:
        reader.form.close()
        raise
    except Exception as exc:  # the parser's own errors: a body that is not multipart
        reader.form.close()
        raise DocqaError(f"the upload body is not valid multipart: {exc}", param="files") from exc
    if not reader.form.files:
        raise InvalidUpload(
            "no files in the upload; send one or more `files` parts (" + MULTIPART_HINT + ")",
            param="files",
        )
    for part in reader.form.files:
        part.stream.seek(0)
    return reader.form
