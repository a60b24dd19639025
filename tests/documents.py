"""Generated test documents, so the suite means something without ../shared."""

from __future__ import annotations

import io
from pathlib import Path

LAYOUT_TEXT = (
    "LayoutParser is an open-source library for document image analysis. "
    "It provides a unified toolkit for deep learning based layout detection, "
    "character recognition and document digitization pipelines."
)


# A small folder of policies, for syncing and ingesting a tree.
HANDBOOK = {
    "leave.md": "# Leave\n\nStaff get 27 days of paid leave a year, booked through the portal.\n",
    "travel/trains.txt": "Second-class rail tickets are reimbursed for trips under four hours.\n",
    "travel/hotels.txt": "Hotel nights are reimbursed up to 140 euros in capital cities.\n",
    "security.md": "# Badges\n\nLost badges are reported to the front desk within a day.\n",
}


def write_tree(root: Path, texts: dict[str, str]) -> Path:
    """Files under `root`, by relative path."""
    for rel, text in texts.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF with a real text layer, one page per string (matplotlib writes the text)."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as pdf:
        for text in pages:
            fig = plt.figure(figsize=(8.5, 11))
            fig.text(0.08, 0.92, textwrap.fill(text, 80), va="top", fontsize=10)
            pdf.savefig(fig)
            plt.close(fig)
    return path


def write_encrypted_pdf(path: Path, password: str = "secret") -> Path:
    import pypdf

    plain = write_pdf(path.with_suffix(".plain.pdf"), ["Confidential salary figures for 2024."])
    writer = pypdf.PdfWriter(clone_from=str(plain))
    writer.encrypt(user_password=password, owner_password=password)
    with path.open("wb") as fh:
        writer.write(fh)
    plain.unlink()
    return path


def write_docx(path: Path, sections: dict[str, list[str]]) -> Path:
    import docx

    doc = docx.Document()
    for heading, paragraphs in sections.items():
        doc.add_heading(heading, level=1)
        for para in paragraphs:
            doc.add_paragraph(para)
    doc.save(str(path))
    return path


def write_docx_bomb(
    path: Path, inflated_bytes: int, *, chunk: int = 16 << 20, zip64: bool = True
) -> Path:
    """A DOCX whose `word/document.xml` inflates to `inflated_bytes` of zeros: the parts of
    a real DOCX, with the body streamed in deflated chunks (nothing that size is ever
    held in memory or written to disk). 2 GiB packs into about 2 MB."""
    import zipfile

    template = write_docx(path.with_name(path.stem + "-template.docx"), {"Title": ["text"]})
    zeros = bytes(chunk)
    with zipfile.ZipFile(template) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            if info.filename == "word/document.xml":
                continue
            out.writestr(info, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
        body = zipfile.ZipInfo("word/document.xml")
        body.compress_type = zipfile.ZIP_DEFLATED
        body._compresslevel = 9  # type: ignore[attr-defined]
        with out.open(body, "w", force_zip64=zip64) as fh:
            left = inflated_bytes
            while left > 0:
                fh.write(zeros[: min(chunk, left)])
                left -= chunk
    template.unlink()
    return path


def write_pptx(path: Path, slides: list[tuple[str, str]]) -> Path:
    import pptx

    deck = pptx.Presentation()
    for title, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    deck.save(str(path))
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    wb.save(str(path))
    return path


def write_encrypted_xlsx(path: Path, password: str = "secret") -> Path:
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = io.BytesIO()
    write_xlsx(path.with_suffix(".plain.xlsx"), [["name", "salary"], ["Ada", 100]])
    plain.write(path.with_suffix(".plain.xlsx").read_bytes())
    path.with_suffix(".plain.xlsx").unlink()
    plain.seek(0)
    with path.open("wb") as out:
        OOXMLFile(plain).encrypt(password, out)
    return path


def write_corpus(folder: Path) -> dict[str, Path]:
    """One small file of each common format, each with a fact a question can find."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "pdf": write_pdf(
            folder / "layout.pdf",
            [
                LAYOUT_TEXT,
                "The second page explains that the Zephyr model detects tables and "
                "figures in scanned newspapers with high accuracy.",
            ],
        ),
        "docx": write_docx(
            folder / "handbook.docx",
            {
                "Holidays": ["Employees receive 27 days of paid holiday per calendar year."],
                "Expenses": ["Travel expenses are reimbursed within 14 days of submission."],
            },
        ),
        "pptx": write_pptx(
            folder / "roadmap.pptx",
            [("Roadmap 2025", "The Falcon release ships in March with offline search.")],
        ),
        "xlsx": write_xlsx(
            folder / "budget.xlsx",
            [["department", "budget"], ["Research", 125000], ["Marketing", 48000]],
        ),
    }
    (folder / "notes.md").write_text(
        "# Office\n\nThe Copenhagen office is located on Strandgade 93 near the harbour.\n"
    )
    (folder / "plain-utf16.txt").write_bytes(
        "The lighthouse keeper lit the lamp every evening at dusk.".encode("utf-16-le")
    )
    (folder / "cafe-cp1252.txt").write_bytes(
        "The café serves crème brûlée and costs 5 € per portion.".encode("cp1252")
    )
    (folder / "page.html").write_text(
        "<html><body><h1>Parking</h1><p>Visitors park in garage B on level minus two."
        "</p></body></html>"
    )
    (folder / "data.csv").write_text("city,population\nAarhus,285000\nOdense,180000\n")
    files.update(
        md=folder / "notes.md",
        txt=folder / "plain-utf16.txt",
        cp1252=folder / "cafe-cp1252.txt",
        html=folder / "page.html",
        csv=folder / "data.csv",
    )
    return files


def write_malformed(folder: Path) -> dict[str, Path]:
    """Broken and protected files, keyed by the failure reason docqa must report."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.txt").write_text("   \n\t\n   ")
    (folder / "garbage.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    (folder / "not-a-pdf.pdf").write_text("this is plain text with a pdf extension")
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 truncated zip")
    (folder / "program.exe").write_bytes(b"MZ\x90\x00")
    return {
        "empty": folder / "empty.txt",
        "blank": folder / "blank.txt",
        "password_pdf": write_encrypted_pdf(folder / "locked.pdf"),
        "password_xlsx": write_encrypted_xlsx(folder / "locked.xlsx"),
        "garbage_pdf": folder / "garbage.pdf",
        "not_pdf": folder / "not-a-pdf.pdf",
        "broken_docx": folder / "broken.docx",
        "unsupported": folder / "program.exe",
    }
