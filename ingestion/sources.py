"""Where documents come from for a sync: a local folder or an S3 bucket prefix.

A `Source` lists its files with a cheap change marker each (size and mtime, or the
object's ETag), hands out a readable local copy of one, and says whether a file is still
there. A listing is the only way a sync learns that a file is gone, so a listing is either
complete or says that it is not (ingestion/sync.py never reads an incomplete listing as
"deleted").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from docqa.errors import ConfigurationError, DocqaError
from ingestion.parse import file_type_of

if TYPE_CHECKING:
    from docqa.settings import Settings


class SourceUnavailable(DocqaError):
    """The source itself cannot be listed (missing folder, no permission, bucket gone)."""

    status_code = 503
    error_type = "source_unavailable"


@dataclass(frozen=True)
class SourceFile:
    """One file of a source."""

    key: str  # path below the source root, '/'-separated
    source: str  # the document's recorded source: absolute path or s3://bucket/key
    size: int
    marker: str  # changes whenever the content may have: size+mtime, or the ETag


@dataclass
class Listing:
    files: list[SourceFile]
    complete: bool = True
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unsupported file types


class Source(Protocol):
    """Somewhere documents live. Listing is the only way a sync learns that a file is gone,
    so a listing must either be complete or say that it is not."""

    uri: str

    def list_files(self) -> Listing:
        """Every supported file under the source, hidden files skipped.

        :raises SourceUnavailable: the source cannot be listed at all.
        :returns: with `complete=False` and the problems named when parts could not be
            listed (an unreadable subfolder); files there may or may not still exist.
        """

    def owns(self, source: str) -> bool:
        """Whether a document's recorded source lies under this source."""

    def fetch(self, file: SourceFile) -> contextlib.AbstractContextManager[Path]:
        """A local, readable copy of the file for the duration of the context.

        :raises OSError: the file cannot be read (it is recorded as a failed document).
        """

    def exists(self, source: str) -> bool:
        """Whether the document's file is still there (checked again right before deleting)."""


def _supported(name: str) -> bool:
    return file_type_of(Path(name)) is not None


class DirectorySource:
    """A local folder, searched recursively; hidden files and folders are skipped."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.uri = str(self.root)

    def list_files(self) -> Listing:
        if not self.root.exists():
            raise SourceUnavailable(f"{self.root} does not exist (is it mounted?)")
        if not self.root.is_dir():
            raise SourceUnavailable(f"{self.root} is not a folder")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise SourceUnavailable(f"{self.root} cannot be read (permission denied)")
        listing = Listing(files=[])

        def walk_error(exc: OSError) -> None:
            listing.complete = False
            listing.problems.append(f"cannot list {exc.filename}: {exc.strerror or exc}")

        for folder, dirs, names in os.walk(self.root, onerror=walk_error):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                path = Path(folder) / name
                key = path.relative_to(self.root).as_posix()
                if not _supported(name):
                    listing.skipped.append(key)
                    continue
                try:
                    st = path.stat()
                except OSError as exc:
                    listing.complete = False
                    listing.problems.append(f"cannot stat {key}: {exc.strerror or exc}")
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                listing.files.append(
                    SourceFile(key, str(path), st.st_size, f"{st.st_size}:{st.st_mtime_ns}")
                )
        return listing

    def owns(self, source: str) -> bool:
        return source.startswith(self.uri.rstrip(os.sep) + os.sep)

    @contextlib.contextmanager
    def fetch(self, file: SourceFile) -> Iterator[Path]:
        yield Path(file.source)

    def exists(self, source: str) -> bool:
        return Path(source).exists()


class S3Source:
    """Objects under a bucket prefix of S3 or an S3-compatible store (MinIO, Ceph), through
    boto3. Credentials come from the standard AWS variables, profile or instance role."""

    def __init__(self, uri: str, *, endpoint_url: str | None = None, client: Any = None) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigurationError(f"{uri!r} names no bucket; write s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix
        self.uri = f"s3://{bucket}/{prefix}"
        if client is None:
            try:
                import boto3
            except ImportError:
                raise ConfigurationError(
                    f"syncing {uri} needs boto3: pip install 'docqa[s3]'"
                ) from None
            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client

    def list_files(self) -> Listing:
        from botocore.exceptions import BotoCoreError, ClientError

        listing = Listing(files=[])
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    rel = key[len(self.prefix) :].lstrip("/")
                    if key.endswith("/") or any(p.startswith(".") for p in rel.split("/")):
                        continue
                    if not _supported(key):
                        listing.skipped.append(rel)
                        continue
                    etag = str(obj.get("ETag", "")).strip('"')
                    listing.files.append(
                        SourceFile(
                            rel, f"s3://{self.bucket}/{key}", int(obj["Size"]), f"etag:{etag}"
                        )
                    )
        except (BotoCoreError, ClientError) as exc:
            # A listing cut short says nothing about which objects are gone.
            raise SourceUnavailable(f"cannot list {self.uri}: {exc}") from exc
        return listing

    def owns(self, source: str) -> bool:
        return source.startswith(f"s3://{self.bucket}/{self.prefix}")

    def _key(self, source: str) -> str:
        return source.removeprefix(f"s3://{self.bucket}/")

    @contextlib.contextmanager
    def fetch(self, file: SourceFile) -> Iterator[Path]:
        from botocore.exceptions import BotoCoreError, ClientError

        folder = Path(tempfile.mkdtemp(prefix="docqa-s3-"))
        try:
            # The object's own name, so the file type is read from its extension.
            path = folder / Path(file.key).name
            try:
                self.client.download_file(self.bucket, self._key(file.source), str(path))
            except (BotoCoreError, ClientError) as exc:
                raise OSError(f"cannot download {file.source}: {exc}") from exc
            yield path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def exists(self, source: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(source))
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


def open_source(uri: str, settings: Settings) -> Source:
    """A folder path or an s3:// URI as a Source."""
    if uri.startswith("s3://"):
        return S3Source(uri, endpoint_url=settings.sync.s3_endpoint_url)
    if "://" in uri:
        raise ConfigurationError(f"cannot sync {uri!r}: a source is a folder or an s3:// URI")
    return DirectorySource(Path(uri))
