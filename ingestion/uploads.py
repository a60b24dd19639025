"""Uploaded files: checked, then kept under the data folder until (and after) indexing.

Every file of a request is checked and written to a temporary name first; only when all
pass are they moved into place, so a rejected request changes nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from docqa.domain import DEFAULT_COLLECTION, document_id_for
from docqa.errors import DocqaError, FileTooLarge, UnsupportedFileType
from docqa.settings import Settings
from ingestion.jobs import UploadItem
from ingestion.parse import file_type_of, supported_extensions

_COPY_BLOCK = 1 << 20


@dataclass
class IncomingFile:
    filename: str | None
    stream: BinaryIO


def clean_filename(raw: str | None) -> str:
    """The file's own name, without any client-side folders or control characters."""
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").split("/")[-1])
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", ".."):
        raise DocqaError("every uploaded file needs a file name", param="files")
    return name[:255]


def accept_uploads(
    settings: Settings, files: list[IncomingFile], collection: str = DEFAULT_COLLECTION
) -> list[UploadItem]:
    """Validate and store uploads for `collection`; returns what to index.

    :raises DocqaError: no files, too many, a name missing (400);
    :raises UnsupportedFileType: an extension docqa cannot parse (415);
    :raises FileTooLarge: a file over the upload limit (413).
    """
    if not files:
        raise DocqaError("no files in the upload; send one or more `files` parts", param="files")
    limit = settings.api.max_files_per_upload
    if len(files) > limit:
        raise DocqaError(
            f"{len(files)} files in one upload; the limit is {limit} "
            "(DOCQA_API__MAX_FILES_PER_UPLOAD)",
            param="files",
        )
    names = [clean_filename(f.filename) for f in files]
    unsupported = [n for n in names if file_type_of(Path(n)) is None]
    if unsupported:
        raise UnsupportedFileType(
            f"cannot index {', '.join(repr(n) for n in unsupported)}: unsupported file type. "
            f"Supported: {' '.join(supported_extensions())}",
            param="files",
        )
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=settings.uploads_dir))
    try:
        staged = [
            _stage(f.stream, staging / f"{n:04d}", name, settings.api.max_upload_mb)
            for n, (f, name) in enumerate(zip(files, names, strict=True))
        ]
        items = []
        for name, tmp in zip(names, staged, strict=True):
            document_id = document_id_for(name, collection)
            dest = settings.uploads_dir / document_id / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.replace(dest)
            items.append(UploadItem(document_id, name, dest.resolve(), collection))
        return items
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage(stream: BinaryIO, tmp: Path, name: str, max_mb: float) -> Path:
    limit = int(max_mb * 1024 * 1024)
    size = 0
    with tmp.open("wb") as out:
        while block := stream.read(_COPY_BLOCK):
            size += len(block)
            if size > limit:
                raise FileTooLarge(
                    f"{name!r} is over the {max_mb:g} MiB upload limit (DOCQA_API__MAX_UPLOAD_MB)",
                    param="files",
                )
            out.write(block)
    if size == 0:
        raise DocqaError(f"{name!r} is empty (0 bytes)", param="files")
    return tmp
