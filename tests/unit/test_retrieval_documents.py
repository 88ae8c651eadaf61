"""Knowledge-base document readers: each kind read, each malformed kind refused precisely."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from workers.ml.retrieval.documents import DocumentRejected, html_to_text, read_document


def text_pdf(text: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica, with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 20 200 Td ({text}) Tj ET".encode()
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 300 300]/Contents 4 0 R"
        b"/Resources<</Font<</F1 5 0 R>>>>>>",
        b"<</Length %d>>stream\n" % len(stream) + stream + b"\nendstream",
        b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj" % number + body + b"endobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


TEXT_PDF = text_pdf("Refunds take fourteen days.")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refusal(tmp_path: Path, name: str, data: bytes, **kwargs: str) -> str:
    with pytest.raises(DocumentRejected) as caught:
        read_document(write(tmp_path, name, data), name, **kwargs)
    return caught.value.message


def test_it_reads_plain_text_and_markdown_keeping_paragraphs(tmp_path: Path) -> None:
    doc = read_document(
        write(tmp_path, "a.md", b"# Title\r\n\r\nBody one.\r\n\r\n\r\nBody two."), "a.md"
    )
    assert doc.kind == "markdown"
    assert doc.text == "# Title\n\nBody one.\n\nBody two."


def test_it_strips_html_tags_and_drops_script_and_style(tmp_path: Path) -> None:
    html = (
        b"<html><head><title>t</title><style>p{color:red}</style></head><body>"
        b"<h1>Returns</h1><p>Send it back within <b>30 days</b>.</p>"
        b"<script>alert('x')</script><p>Fish &amp; chips</p></body></html>"
    )
    doc = read_document(write(tmp_path, "p.html", html), "p.html")
    assert doc.text == "Returns\n\nSend it back within 30 days .\n\nFish & chips".replace(" .", ".")
    assert "alert" not in doc.text and "color" not in doc.text


def test_html_with_only_markup_is_refused_as_empty(tmp_path: Path) -> None:
    message = refusal(tmp_path, "e.html", b"<html><script>x()</script></html>")
    assert "holds no text" in message and "markup" in message
    assert html_to_text("<p>a</p><div>b</div>") == "a\n\nb"


def test_it_refuses_an_empty_file(tmp_path: Path) -> None:
    assert "is empty (0 bytes)" in refusal(tmp_path, "e.txt", b"")


def test_it_refuses_whitespace_only_text(tmp_path: Path) -> None:
    assert "holds no text" in refusal(tmp_path, "w.txt", b"  \n\n \t\n")


def test_it_refuses_binary_with_nul_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 8
    assert "binary file (it contains NUL bytes)" in refusal(tmp_path, "b.txt", data)


def test_it_names_a_zip_archive(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("a.txt", "hello")
    assert "is a ZIP archive, not a plain text document" in refusal(
        tmp_path, "z.txt", buffer.getvalue()
    )


def test_latin1_text_names_the_line_and_byte_offset(tmp_path: Path) -> None:
    message = refusal(tmp_path, "l.txt", "first line\nCaf\u00e9 au lait\n".encode("latin-1"))
    assert "Line 2 is not valid UTF-8: byte 0xE9 at position 4 of the line (offset 14" in message
    assert "Latin-1" in message and "Excel" not in message


def test_utf16_without_bom_is_named(tmp_path: Path) -> None:
    message = refusal(tmp_path, "u.md", ("hello world, " * 40).encode("utf-16-le"))
    assert "UTF-16 (LE) without a byte-order mark" in message


def test_unknown_extension_lists_the_kinds(tmp_path: Path) -> None:
    assert "upload plain text (.txt), Markdown" in refusal(tmp_path, "a.docx", b"x")


def test_jsonl_rows_become_paragraphs(tmp_path: Path) -> None:
    data = b'{"text": "One."}\n\n{"text": "Two.", "id": 2}\n'
    assert read_document(write(tmp_path, "k.jsonl", data), "k.jsonl").text == "One.\n\nTwo."


def test_jsonl_names_every_row_without_the_field_by_line(tmp_path: Path) -> None:
    rows = [{"text": "ok"}, {"body": "x"}, {"text": 3}, [1], {"text": "fine"}]
    data = b"\n".join(json.dumps(r).encode() for r in rows) + b"\n{broken\n"
    with pytest.raises(DocumentRejected) as caught:
        read_document(write(tmp_path, "k.jsonl", data), "k.jsonl")
    message = caught.value.message
    assert "4 line(s) cannot be used" in message
    assert "Line 2: no 'text' field (its fields: body)." in message
    assert "Line 3: 'text' is a number (3), not a string." in message
    assert "Line 4: expected a JSON object" in message
    assert "Line 6: not valid JSON" in message
    assert [p.line for p in caught.value.problems] == [2, 3, 4, 6]


def test_jsonl_with_another_named_field(tmp_path: Path) -> None:
    data = b'{"body": "Kept."}\n'
    assert (
        read_document(write(tmp_path, "k.jsonl", data), "k.jsonl", text_field="body").text
        == "Kept."
    )
    assert "no 'text' field" in refusal(tmp_path, "k2.jsonl", data)


def test_it_reads_the_text_of_a_pdf(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path, "r.pdf", TEXT_PDF), "r.pdf")
    assert doc.kind == "pdf" and doc.pages == 1
    assert "Refunds take fourteen days." in doc.text


def test_a_corrupt_pdf_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, "c.pdf", b"%PDF-1.4\n" + b"\x93garbage" * 50)
    assert "could not be read as a PDF" in message


def test_a_file_named_pdf_that_is_not_one_is_refused(tmp_path: Path) -> None:
    assert "is not a PDF (it does not start with %PDF-)" in refusal(tmp_path, "n.pdf", b"hello")


def test_a_pdf_without_text_is_refused(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    buffer = io.BytesIO()
    writer.write(buffer)
    message = refusal(tmp_path, "blank.pdf", buffer.getvalue())
    assert "has 1 page(s) but no extractable text" in message


def test_an_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(TEXT_PDF)))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert "encrypted PDF that needs a password" in refusal(tmp_path, "s.pdf", buffer.getvalue())


def test_a_pdf_uploaded_as_text_is_named(tmp_path: Path) -> None:
    assert "is a PDF document, not a plain text document: rename it to .pdf" in refusal(
        tmp_path, "x.txt", TEXT_PDF
    )
