"""Errors a user can act on. Each carries an HTTP status and a stable type name so the API
and the CLI report it the same way (`{"error": {"message", "type", "code"}}`)."""

from __future__ import annotations


class DocqaError(Exception):
    """Base class: a message that says what is wrong and what to do."""

    status_code = 400
    error_type = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ConfigurationError(DocqaError):
    status_code = 500
    error_type = "configuration_error"


class NotFoundError(DocqaError):
    status_code = 404
    error_type = "not_found"


class UnsupportedFileType(DocqaError):
    status_code = 415
    error_type = "unsupported_media_type"


class FileTooLarge(DocqaError):
    status_code = 413
    error_type = "payload_too_large"


class IngestError(DocqaError):
    """A document could not be indexed. `reason` is a short machine-readable cause
    (`empty`, `password_protected`, `corrupt`, `no_text`, `unsupported_type`, ...)."""

    status_code = 422
    error_type = "ingest_failed"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class IndexMismatchError(DocqaError):
    """The serving index was built with another embedding model or chunking."""

    status_code = 409
    error_type = "index_mismatch"


class WriterBusyError(DocqaError):
    """Another process holds the embedded index for writing."""

    status_code = 409
    error_type = "writer_busy"


class ServiceUnavailable(DocqaError):
    status_code = 503
    error_type = "service_unavailable"
