"""What parsing one file may cost, and the checks made before a parser is let loose on it.

A 2 MB DOCX can hold a `word/document.xml` that inflates to gigabytes, and a small PDF can
declare a million pages. Those are refused from their container's own directory (the ZIP
central directory, the PDF page tree) before any parser reads them; everything else is
parsed in a worker process that runs under a memory and a time limit
(ingestion/isolation.py), so what slips past the checks costs that worker, never the
server. Over budget, a document fails with reason `over_budget` and says which limit.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from docqa.errors import IngestError
from docqa.settings import IngestionSettings

# File types that are ZIP containers (OOXML, OpenDocument).
ZIP_TYPES = {"docx", "pptx", "xlsx", "odt"}

# Below this unpacked size a high compression ratio is harmless (a short XML file full of
# repeated tags compresses a hundredfold), so the ratio is only judged above it.
RATIO_FLOOR_BYTES = 16 * 1024 * 1024

OVER_BUDGET = "over_budget"


@dataclass(frozen=True)
class ParseBudget:
    """Limits on parsing one file (DOCQA_INGESTION__*)."""

    memory_mb: int
    timeout_s: float
    max_unpacked_mb: float
    max_compression_ratio: float
    max_archive_entries: int
    max_pdf_pages: int
    max_text_mb: float

    @classmethod
    def of(cls, settings: IngestionSettings) -> ParseBudget:
        return cls(
            memory_mb=settings.parse_memory_mb,
            timeout_s=settings.parse_timeout_s,
            max_unpacked_mb=settings.max_unpacked_mb,
            max_compression_ratio=settings.max_compression_ratio,
            max_archive_entries=settings.max_archive_entries,
            max_pdf_pages=settings.max_pdf_pages,
            max_text_mb=settings.max_text_mb,
        )


def over_budget(message: str) -> IngestError:
    return IngestError(message, reason=OVER_BUDGET)


def check_before_parsing(path: Path, file_type: str, budget: ParseBudget) -> None:
    """Refuse a file whose container already says it would cost more than the budget.

    Reads only the container's directory (ZIP central directory, PDF page count); a file
    too broken to read one is left to the parser, which reports it as corrupt.

    :raises IngestError: reason `over_budget`, naming the limit and its setting.
    """
    if file_type in ZIP_TYPES:
        check_archive(path, file_type, budget)
    elif file_type == "pdf":
        check_pdf_pages(path, budget)


def check_archive(path: Path, file_type: str, budget: ParseBudget) -> None:
    """Entry count, total unpacked size and compression ratio of a ZIP-based file.

    The sizes are the ones the central directory declares; Python's zipfile (which the
    OOXML parsers use) stops reading an entry at its declared size, so a lying directory
    gets a truncated, corrupt entry, never more bytes than declared.
    """
    kind = file_type.upper()
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a readable ZIP: parse.py says it is corrupt
    if len(entries) > budget.max_archive_entries:
        raise over_budget(
            f"{kind} file holds {len(entries)} parts, over the limit of "
            f"{budget.max_archive_entries} (DOCQA_INGESTION__MAX_ARCHIVE_ENTRIES); "
            "it was not parsed"
        )
    unpacked = sum(e.file_size for e in entries)
    packed = sum(e.compress_size for e in entries)
    limit = budget.max_unpacked_mb * 1024 * 1024
    if unpacked > limit:
        raise over_budget(
            f"{kind} file unpacks to {_mib(unpacked)}, over the {budget.max_unpacked_mb:g} MiB "
            "limit (DOCQA_INGESTION__MAX_UNPACKED_MB); it was not parsed (a ZIP bomb, or a "
            "document too large to index in one piece)"
        )
    ratio = unpacked / max(packed, 1)
    if unpacked > RATIO_FLOOR_BYTES and ratio > budget.max_compression_ratio:
        raise over_budget(
            f"{kind} file is compressed {ratio:.0f} to 1 ({_mib(packed)} unpacking to "
            f"{_mib(unpacked)}), over the limit of {budget.max_compression_ratio:g} to 1 "
            "(DOCQA_INGESTION__MAX_COMPRESSION_RATIO); it was not parsed (a ZIP bomb?)"
        )


def check_pdf_pages(path: Path, budget: ParseBudget) -> None:
    """The page count from the PDF's page tree (read lazily: no page is parsed)."""
    import pypdf

    try:
        reader = pypdf.PdfReader(path, strict=False)
        if reader.is_encrypted:
            return  # parse.py explains protection; the page tree may be unreadable
        pages = len(reader.pages)
    except Exception:  # noqa: BLE001 - a PDF pypdf cannot count is judged by the parser
        return
    if pages > budget.max_pdf_pages:
        raise over_budget(
            f"PDF has {pages} pages, over the limit of {budget.max_pdf_pages} "
            "(DOCQA_INGESTION__MAX_PDF_PAGES); split it or raise the limit"
        )


def check_text_size(chars: int, budget: ParseBudget) -> None:
    """The text a parser extracted must fit the budget before it is handed on."""
    limit = budget.max_text_mb * 1024 * 1024
    if chars > limit:
        raise over_budget(
            f"the file's text is {_mib(chars)} long, over the {budget.max_text_mb:g} MiB "
            "limit (DOCQA_INGESTION__MAX_TEXT_MB)"
        )


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
