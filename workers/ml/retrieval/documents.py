"""Reading knowledge-base documents into plain text, or refusing them with a precise reason.

Kinds: plain text, Markdown (kept as written: its paragraphs and headings chunk well), HTML
(tags stripped with the stdlib parser, script and style dropped, block elements end a
paragraph), PDF (pypdf, page by page) and JSON Lines whose rows carry a named text field
(each row becomes one paragraph).

Refusals reuse the dataset uploader's checks: the leading bytes of archives, images and
other binary files, UTF-16/32 without a byte-order mark, and the first byte that is not
UTF-8 with its line and offset. Every problem of a JSON Lines file is named by line number.

The web process imports this module, so it must not import Django, torch or transformers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from workers.ml.data.readers import _MAGIC, _not_utf8
from workers.ml.data.records import DatasetRejected, Problem, _describe
from workers.ml.data.sniff import looks_binary, unicode_without_bom
from workers.ml.errors import UserFacingError

KINDS = ("text", "markdown", "html", "pdf", "jsonl")
KIND_NAMES = {
    "text": "plain text",
    "markdown": "Markdown",
    "html": "HTML",
    "pdf": "PDF",
    "jsonl": "JSON Lines",
}
EXTENSIONS = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_HEAD = 8192
_MAX_LISTED = 20  # problems named one by one in the message; all are kept on the exception


class DocumentRejected(UserFacingError):
    """The document cannot be used; nothing from it should be stored."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


@dataclass(frozen=True)
class DocumentText:
    kind: str
    text: str  # paragraphs separated by blank lines
    pages: int | None = None  # PDF only


def kind_for(filename: str) -> str:
    """The document kind named by the file's extension, or a refusal listing the kinds."""
    kind = EXTENSIONS.get(Path(filename).suffix.lower())
    if kind is None:
        raise DocumentRejected(
            f"{filename!r} is not a supported document: upload plain text (.txt), Markdown "
            "(.md), HTML (.html), PDF (.pdf) or JSON Lines (.jsonl) with a text field."
        )
    return kind


def read_document(path: Path, filename: str, *, text_field: str = "text") -> DocumentText:
    """The text of the document at `path` (uploaded as `filename`), or DocumentRejected."""
    kind = kind_for(filename)
    size = path.stat().st_size
    if size == 0:
        raise DocumentRejected(f"{filename!r} is empty (0 bytes): there is nothing to index.")
    with path.open("rb") as f:
        head = f.read(_HEAD)
    if kind == "pdf":
        return _read_pdf(path, filename, head)
    _refuse_binary(head, filename, kind)
    raw = _decode(path)
    if kind == "html":
        text = html_to_text(raw)
    elif kind == "jsonl":
        text = _jsonl_text(raw, filename, text_field)
    else:
        text = _normalise(raw)
    if not text.strip():
        raise DocumentRejected(
            f"{filename!r} holds no text (only whitespace"
            + (" and markup" if kind == "html" else "")
            + "): there is nothing to index."
        )
    return DocumentText(kind=kind, text=text)


def _refuse_binary(head: bytes, filename: str, kind: str) -> None:
    expected = f"a {KIND_NAMES[kind]} document"
    advice = "upload the document as UTF-8 text, Markdown, HTML, PDF or JSON Lines."
    for magic, what, _ in _MAGIC:
        if head.startswith(magic):
            if magic == b"%PDF-":
                advice = "rename it to .pdf and upload it again."
            raise DocumentRejected(f"{filename!r} is {what}, not {expected}: {advice}")
    if unicode := unicode_without_bom(head):
        raise DocumentRejected(
            f"{filename!r} looks like {unicode} without a byte-order mark, not {expected}: "
            "save it as UTF-8 and upload it again (only UTF-8 is accepted)."
        )
    if looks_binary(head):
        raise DocumentRejected(
            f"{filename!r} looks like a binary file (it contains NUL bytes), not {expected}: "
            f"{advice}"
        )


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        rejected: DatasetRejected = _not_utf8(path)
        message = rejected.message.replace(" (in Excel: Save As, “CSV UTF-8”)", "")
        raise DocumentRejected(message, rejected.problems) from None


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- HTML -------------------------------------------------------------------------------

_BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
    "section", "article", "header", "footer", "blockquote", "pre", "hr", "dd", "dt", "main",
}  # fmt: skip
_SKIP = {"script", "style", "noscript", "template", "head"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML page: paragraphs on block elements, whitespace collapsed."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    paragraphs = []
    for block in "".join(parser.parts).split("\n\n"):
        line = " ".join(block.split())
        if line:
            paragraphs.append(line)
    return "\n\n".join(paragraphs)


# --- JSON Lines -------------------------------------------------------------------------


def _jsonl_text(raw: str, filename: str, field: str) -> str:
    texts: list[str] = []
    problems: list[Problem] = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(number, "malformed", f"Line {number}: not valid JSON ({exc.msg}).")
            )
            continue
        if not isinstance(value, dict):
            message = f"Line {number}: expected a JSON object ({{...}}), found {_describe(value)}."
            problems.append(Problem(number, "malformed", message))
        elif field not in value:
            keys = ", ".join(sorted(value)[:8]) or "none"
            message = f"Line {number}: no {field!r} field (its fields: {keys})."
            problems.append(Problem(number, "missing_field", message))
        elif not isinstance(value[field], str):
            message = f"Line {number}: {field!r} is {_describe(value[field])}, not a string."
            problems.append(Problem(number, "wrong_type", message))
        elif value[field].strip():
            texts.append(_normalise(value[field]))
    if problems:
        listed = " ".join(p.message for p in problems[:_MAX_LISTED])
        more = len(problems) - _MAX_LISTED
        tail = f" …and {more} more." if more > 0 else ""
        raise DocumentRejected(
            f"{filename!r}: {len(problems)} line(s) cannot be used as documents with the text "
            f"field {field!r}. {listed}{tail}",
            problems,
        )
    return "\n\n".join(texts)


# --- PDF --------------------------------------------------------------------------------


def _read_pdf(path: Path, filename: str, head: bytes) -> DocumentText:
    if not head.lstrip()[:5] == b"%PDF-":
        raise DocumentRejected(
            f"{filename!r} is not a PDF (it does not start with %PDF-): upload the document "
            "under its own extension."
        )
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except Exception:
                unlocked = 0
            if not unlocked:
                raise DocumentRejected(
                    f"{filename!r} is an encrypted PDF that needs a password: save an "
                    "unprotected copy and upload that."
                )
        pages = [(page.extract_text() or "") for page in reader.pages]
    except DocumentRejected:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentRejected(
            f"{filename!r} could not be read as a PDF ({type(exc).__name__}: {exc}); it may be "
            "damaged or cut off: export it again and upload the new file."
        ) from None
    text = "\n\n".join(_normalise(p) for p in pages if p.strip())
    if not text.strip():
        raise DocumentRejected(
            f"{filename!r} has {len(pages)} page(s) but no extractable text (a scan or "
            "images only?): run OCR on it or upload the text itself."
        )
    return DocumentText(kind="pdf", text=text, pages=len(pages))
