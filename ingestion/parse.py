"""Files in, structured elements out: docqa's own readers or unstructured parse, docqa
explains failures.

Plain text, Markdown, PDF and DOCX are read directly (`_read_directly`), tens of times
faster than unstructured's heuristics; the other formats, and files those readers cannot
open, go to unstructured.

unstructured returns an empty list for many broken inputs (an encrypted PDF, an encrypted
e-mail, a PDF it judges too complex). A user needs to know why a file was not indexed, so
each known cause is checked before or after parsing and reported as an `IngestError`
whose `reason` names it. Text that can still be recovered is kept, with a warning.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import importlib
import logging
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from docqa.domain import Element, ParsedDocument
from docqa.errors import IngestError
from docqa.text import dehyphenate, vocabulary
from ingestion import plain_text
from ingestion.budget import ParseBudget, check_before_parsing, check_text_size

# Extension -> file type docqa records. Everything here parses without network or GPU.
SUPPORTED_TYPES: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".html": "html",
    ".htm": "html",
    ".md": "md",
    ".markdown": "md",
    ".txt": "txt",
    ".text": "txt",
    ".log": "txt",
    ".rst": "rst",
    ".org": "org",
    ".rtf": "rtf",
    ".odt": "odt",
    ".eml": "eml",
    ".msg": "msg",
    ".csv": "csv",
    ".tsv": "tsv",
}
TEXT_TYPES = {"txt", "md", "rst", "org", "html", "csv", "tsv"}
OOXML_TYPES = {"docx", "pptx", "xlsx"}

# Page furniture repeats on every page and answers nothing.
SKIPPED_CATEGORIES = {"Header", "Footer", "PageBreak", "PageNumber", "Image"}

# What decode_text reads as UTF-8 or from a byte-order mark: no guess to warn about.
DECLARED_ENCODINGS = {"utf-8", "ascii", "utf-8-sig", "utf-16", "utf-32"}

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_PARSER_LOGGERS = ("unstructured", "pdfminer", "pypdf", "pikepdf")


class Parser(Protocol):
    """Turns one file into elements, within a budget.

    Never writes anything. A file that cannot be indexed raises `IngestError` with its
    reason; one that would cost more than the budget (memory, time, unpacked size, pages,
    text) raises it with reason `over_budget`, and a parser that crashes or is killed on
    it is reported the same way: one bad file never takes its caller down with it.
    """

    def parse(self, path: Path, *, source: str) -> ParsedDocument: ...

    def close(self) -> None:
        """Stop what the parser started (a worker process); it starts again when needed."""


def parse_within_budget(
    path: Path, *, source: str, pdf_strategy: str, budget: ParseBudget, parser: str = "fast"
) -> ParsedDocument:
    """`parse_file` after the container checks, with the extracted text measured.

    :raises IngestError: as `parse_file`, or reason `over_budget`.
    """
    file_type = file_type_of(path)
    if file_type is not None and path.is_file():
        with _capture_parser_log():  # pypdf's complaints are parse_file's to report
            check_before_parsing(path, file_type, budget)
    parsed = parse_file(path, source=source, pdf_strategy=pdf_strategy, parser=parser)
    check_text_size(sum(len(e.text) for e in parsed.elements), budget)
    return parsed


def file_type_of(path: Path) -> str | None:
    return SUPPORTED_TYPES.get(path.suffix.lower())


def supported_extensions() -> list[str]:
    return sorted(SUPPORTED_TYPES)


def parse_file(
    path: Path, *, source: str, pdf_strategy: str = "fast", parser: str = "fast"
) -> ParsedDocument:
    """Parse one file into elements with page and section.

    `parser` "fast" reads plain text, Markdown, PDF and DOCX with docqa's own readers
    (`_read_directly`); "unstructured", and files those readers cannot read, go to
    unstructured (DOCQA_INGESTION__PARSER).

    :raises IngestError: the file is empty, unsupported, protected, corrupt or has no text;
        `reason` says which and the message says what to do.
    """
    file_type = file_type_of(path)
    if file_type is None:
        raise IngestError(
            f"unsupported file type {path.suffix or '(no extension)'!r}; docqa reads "
            + ", ".join(supported_extensions()),
            reason="unsupported_type",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"cannot read file: {exc.strerror or exc}", reason="unreadable") from exc
    if not data:
        raise IngestError("file is empty (0 bytes)", reason="empty")

    warnings: list[str] = []
    encoding = None
    text = ""
    if file_type in TEXT_TYPES:
        encoding, text = decode_text(data)
        if not text.strip():
            raise IngestError("file contains only whitespace", reason="empty")
        if encoding not in DECLARED_ENCODINGS:
            warnings.append(f"no encoding declared; read as {encoding} (a guess)")
    with _capture_parser_log() as check_log:
        damage = _check_container(path, data, file_type)

    elements: list[Element] | None = None
    parser_log: list[logging.LogRecord] = []
    if parser == "fast":
        elements = _read_directly(path, file_type, text)
    if elements is None:
        elements, parser_log = _partition(path, file_type, encoding, pdf_strategy)
    parser_log = check_log + parser_log
    warnings.extend(_repair_warnings(parser_log))
    if not any(e.text.strip() for e in elements) and file_type == "pdf":
        with _capture_parser_log():
            elements = _pdf_text_fallback(path, parser_log, warnings)
    if not any(e.text.strip() for e in elements):
        raise _no_text_error(file_type, parser_log, damage)
    return ParsedDocument(
        source=source, file_type=file_type, elements=_join_cut_words(elements), warnings=warnings
    )


def decode_text(data: bytes) -> tuple[str, str]:
    """Guess a text file's encoding: BOMs, UTF-8, BOM-less UTF-16, then Windows-1252.

    unstructured's own guess reads Western European pages as Central European (cp1250),
    which garbles accented letters, so docqa decides before handing the text over.
    """
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return name, data.decode(name, errors="replace")
    # Text never holds NUL bytes, but UTF-16 without a BOM is full of them (and is also
    # valid UTF-8, so this test comes first).
    sample = data[:4096]
    if len(sample) >= 2 and sample.count(0) > len(sample) // 4:
        odd_nuls = sample[1::2].count(0)
        even_nuls = sample[0::2].count(0)
        name = "utf-16-le" if odd_nuls >= even_nuls else "utf-16-be"
        return name, data.decode(name, errors="replace")
    try:
        return "utf-8", data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return "cp1252", data.decode("cp1252")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        return "latin-1", data.decode("latin-1")
    return best.encoding, str(best)


def _check_container(path: Path, data: bytes, file_type: str) -> str | None:
    """Catch protected and corrupt files whose parsers would only return nothing.

    Returns what is damaged when the file may still be recoverable by the parser.
    """
    if file_type == "pdf":
        return _check_pdf(path, data)
    if file_type in OOXML_TYPES or file_type == "odt":
        if data.startswith(OLE_MAGIC):
            if _ole_has_stream(path, "EncryptionInfo"):
                raise IngestError(
                    f"{file_type.upper()} file is password-protected; save an unprotected copy "
                    "and ingest that",
                    reason="password_protected",
                )
            raise IngestError(
                f"not a {file_type.upper()} file: this is a legacy Office (OLE) document; "
                "save it in the current format",
                reason="corrupt",
            )
        if not zipfile.is_zipfile(path):
            raise IngestError(
                f"{file_type.upper()} file is corrupt (not a valid ZIP container)",
                reason="corrupt",
            )
    elif file_type == "msg":
        _check_msg(path, data)
    return None


def _check_pdf(path: Path, data: bytes) -> str | None:
    if b"%PDF-" not in data[:1024]:
        raise IngestError("not a PDF file (no %PDF header)", reason="corrupt")
    import pypdf
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(
                "PDF is password-protected; remove the password (or export an unprotected "
                "copy) and ingest that",
                reason="password_protected",
            )
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        # pdfminer repairs some structures pypdf cannot read; let it try before failing.
        return str(exc) or type(exc).__name__
    except NotImplementedError as exc:
        # pypdf raises this for encryption algorithms it lacks: still protected.
        raise IngestError(
            f"PDF is encrypted with an unsupported scheme ({exc}); export an unprotected copy",
            reason="password_protected",
        ) from exc
    return None


def _check_msg(path: Path, data: bytes) -> None:
    if not data.startswith(OLE_MAGIC):
        raise IngestError("not an Outlook MSG file (no OLE header)", reason="corrupt")
    try:
        from oxmsg import Message

        headers = Message.load(str(path)).message_headers
    except MemoryError:
        raise
    except Exception as exc:
        raise IngestError(f"Outlook MSG file is corrupt: {exc}", reason="corrupt") from exc
    content_type = headers.get("Content-Type", "")
    if "encrypted" in content_type or "pkcs7-mime" in content_type:
        raise IngestError(
            "e-mail is encrypted (S/MIME or PGP); docqa cannot read its body. Ingest a "
            "decrypted copy",
            reason="encrypted",
        )


def _ole_has_stream(path: Path, name: str) -> bool:
    import olefile

    try:
        with olefile.OleFileIO(str(path)) as ole:
            return bool(ole.exists(name))
    except OSError:
        return False


@contextmanager
def _capture_parser_log() -> Iterator[list[logging.LogRecord]]:
    """Collect what the parsers log: repairs and give-ups are only reported there."""
    records: list[logging.LogRecord] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Collect(level=logging.INFO)
    loggers = [logging.getLogger(name) for name in _PARSER_LOGGERS]
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        # The parsers' chatter ("No languages specified...") is not for the user's terminal.
        lg.propagate = False
    try:
        yield records
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def _read_directly(path: Path, file_type: str, text: str) -> list[Element] | None:
    """Elements from docqa's own reader for the format, or None to let unstructured parse.

    A PDF without a text layer, or one pdfium refuses, and a DOCX python-docx cannot load
    go to unstructured, whose failures name the cause (see `_no_text_error`).
    """
    if file_type == "txt":
        return plain_text.text_elements(text)
    if file_type == "md":
        return plain_text.markdown_elements(text)
    if file_type not in ("pdf", "docx"):
        return None
    from ingestion.docx_text import docx_elements
    from ingestion.pdf_text import pdf_elements

    try:
        elements = pdf_elements(path) if file_type == "pdf" else docx_elements(path)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - unstructured reports what is wrong with the file
        return None
    return elements if any(e.text.strip() for e in elements) else None


def load_unstructured() -> None:
    """Import unstructured and load the packaged spaCy model its text heuristics use:
    seconds and ~300 MiB of address space, so only the first file unstructured parses pays
    it, and (in the parse worker) outside that file's memory budget. Idempotent.

    :raises ImportError: unstructured or the spaCy model package is missing.
    """
    from ingestion.spacy_model import use_packaged_spacy_model

    use_packaged_spacy_model()
    import unstructured.partition.auto  # noqa: F401
    from unstructured.nlp import tokenize

    # Loaded on the first title/narrative check otherwise, inside the budget of whichever
    # file came first (a 128 MiB budget then failed now and then on a one-slide deck).
    tokenize._get_nlp()
    # `partition` imports a format's partitioner on its first file: python-pptx's maps
    # ~73 MiB, openpyxl's and pandas' ~40, so those load here too. The PDF one (~730 MiB,
    # OCR stack) stays lazy: only a PDF docqa's own reader cannot read needs it.
    for module in _EAGER_PARTITIONERS:
        with contextlib.suppress(ImportError):
            importlib.import_module(f"unstructured.partition.{module}")


_EAGER_PARTITIONERS = ("pptx", "xlsx", "html", "odt", "email", "epub")


# How `_partition` loads unstructured; the parse worker replaces it with a loader that
# keeps the import out of the memory budget of the file that needed it (isolation.py).
unstructured_loader: Callable[[], None] = load_unstructured


def _partition(
    path: Path, file_type: str, encoding: str | None, pdf_strategy: str
) -> tuple[list[Element], list[logging.LogRecord]]:
    unstructured_loader()
    import warnings as pywarnings

    from unstructured.partition.auto import partition

    kwargs: dict[str, Any] = {"filename": str(path)}
    if file_type == "pdf":
        kwargs["strategy"] = pdf_strategy
    if encoding is not None:
        kwargs["encoding"] = "utf-8" if encoding == "ascii" else encoding
    if file_type == "msg":
        kwargs["process_attachments"] = False
    with _capture_parser_log() as log, pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")
        try:
            raw = partition(**kwargs)
        except MemoryError:
            raise  # over the memory budget, not a corrupt file (ingestion/isolation.py)
        except Exception as exc:
            raise _parser_failure(exc, file_type) from exc
    return list(_to_elements(raw)), log


def _parser_failure(exc: Exception, file_type: str) -> IngestError:
    message = str(exc) or type(exc).__name__
    if "password" in message.lower() or "encrypt" in message.lower():
        return IngestError(
            f"{file_type.upper()} file is password-protected; save an unprotected copy and "
            "ingest that",
            reason="password_protected",
        )
    return IngestError(
        f"{file_type.upper()} file is corrupt or unreadable: {message[:300]}", reason="corrupt"
    )


def _to_elements(raw: list[Any]) -> Iterator[Element]:
    """Keep text, page and the heading path; drop page furniture."""
    headings: list[tuple[int, str]] = []
    for el in raw:
        category = getattr(el, "category", type(el).__name__)
        # NFKC folds PDF ligatures ("ﬁ" -> "fi") and full-width forms, so keywords match.
        text = unicodedata.normalize("NFKC", getattr(el, "text", "") or "").strip()
        if category in SKIPPED_CATEGORIES or not text:
            continue
        meta = getattr(el, "metadata", None)
        page = getattr(meta, "page_number", None)
        if category == "Title":
            depth = getattr(meta, "category_depth", None) or 0
            headings = [(d, h) for d, h in headings if d < depth]
            headings.append((depth, plain_text.heading_text(text)))
        yield Element(
            text=text,
            category=category,
            page=int(page) if page is not None else None,
            section=tuple(h for _, h in headings),
        )


def _join_cut_words(elements: list[Element]) -> list[Element]:
    """Words a line-end hyphen cut ("applica- tions") made whole, judged against the
    document's own vocabulary (a compound written elsewhere with its hyphen keeps it)."""
    known = vocabulary(e.text for e in elements)
    return [dataclasses.replace(e, text=dehyphenate(e.text, known)) for e in elements]


# Messages that mean the file's structure was broken and rebuilt; colour-space and font
# complaints are common in healthy files and say nothing about completeness.
_REPAIR_MESSAGE = re.compile(r"repairing|xref|startxref|trailer|rebuil", re.I)


def _repair_warnings(log: list[logging.LogRecord]) -> list[str]:
    """Turn the parsers' repair messages into one warning the user can read."""
    repaired = [r.getMessage() for r in log if _REPAIR_MESSAGE.search(r.getMessage())]
    if not repaired:
        return []
    return [
        f"the file's internal structure is damaged and was repaired while parsing "
        f"({repaired[0][:120]!r}); check that its text is complete"
    ]


def _pdf_text_fallback(
    path: Path, log: list[logging.LogRecord], warnings: list[str]
) -> list[Element]:
    """Read the text layer page by page with pypdf when unstructured gave up on it.

    unstructured skips the text layer of a PDF it judges too complex (many vector
    graphics) and falls back to a layout model docqa does not install: the text is there
    and readable, so take it without layout.
    """
    import pypdf

    try:
        reader = pypdf.PdfReader(path, strict=False)
        pages = [(i + 1, page.extract_text() or "") for i, page in enumerate(reader.pages)]
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a PDF pypdf cannot read either is reported as corrupt
        return []
    elements = [
        Element(
            text=unicodedata.normalize("NFKC", para).strip(), category="NarrativeText", page=number
        )
        for number, text in pages
        for para in re.split(r"\n\s*\n", text)
        if para.strip()
    ]
    if elements:
        why = (
            "the PDF has pages of heavy vector graphics that the layout parser refuses"
            if any("too complex" in r.getMessage() for r in log)
            else "the layout parser returned no text"
        )
        warnings.append(
            f"{why}; text was extracted page by page without layout (headings and tables "
            "are not recognised)"
        )
    return elements


def _no_text_error(file_type: str, log: list[logging.LogRecord], damage: str | None) -> IngestError:
    if damage:
        return IngestError(
            f"{file_type.upper()} file is damaged and no text could be recovered ({damage})",
            reason="corrupt",
        )
    if file_type == "pdf":
        return IngestError(
            "PDF has no extractable text layer (a scanned image or a damaged file); run OCR "
            "on it first, e.g. `ocrmypdf in.pdf out.pdf`",
            reason="no_text",
        )
    if any("Encrypted" in r.getMessage() for r in log):
        return IngestError("document is encrypted", reason="encrypted")
    return IngestError(
        f"no text could be extracted from this {file_type.upper()} file", reason="no_text"
    )
