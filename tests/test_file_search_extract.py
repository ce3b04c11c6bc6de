"""file_search's text extraction: every format it reads, and every way a file can fail to be read."""

from __future__ import annotations

import contextlib
import io
import time
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from retrieval_files import make_docx, make_pdf

from runner.server.tools.file_search.extract import InvalidFile, UnsupportedFile, extract_text, html_to_text


@pytest.mark.parametrize("name", [
    "notes.txt", "README.md", "data.json", "table.csv", "main.py", "app.js", "index.ts", "Main.java", "lib.c",
    "lib.cpp", "main.go", "tool.rb", "lib.rs", "run.sh", "Program.cs", "style.css", "page.php", "paper.tex",
    "config.yaml", "Makefile", "Dockerfile", ".bashrc",
])
def test_text_and_source_files_come_back_as_they_are(name: str) -> None:
    body = "first line: caf\u00e9 \u4f60\u597d\r\nsecond line {\"k\": [1, 2]}\n"
    assert extract_text(body.encode("utf-8"), name) == body.replace("\r\n", "\n")


def test_a_file_without_extension_is_read_when_its_bytes_are_text() -> None:
    assert extract_text(b"just some notes", "NOTES") == "just some notes"


def test_the_mime_type_decides_when_the_extension_does_not() -> None:
    assert extract_text(b"plain words", "upload.bin", "text/plain; charset=utf-8") == "plain words"
    assert "Page text" in extract_text(make_pdf([["Page text"]]), "blob", "application/pdf")
    assert extract_text(b"<p>Hi &amp; bye</p>", "page", "text/html") == "Hi & bye"


def test_pdf_and_docx_are_recognised_by_their_bytes_without_a_name() -> None:
    assert "From bytes" in extract_text(make_pdf([["From bytes"]]), "upload")
    assert "Word body" in extract_text(make_docx(["Word body"]), "upload")


def test_encodings_utf8_bom_utf16_and_detected_legacy_ones() -> None:
    assert extract_text(b"\xef\xbb\xbfbom stripped", "a.txt") == "bom stripped"
    assert extract_text("UTF-16 text \u00e9".encode("utf-16"), "a.txt") == "UTF-16 text \u00e9"
    assert extract_text("UTF-32 text".encode("utf-32"), "a.txt") == "UTF-32 text"
    french = "Le caf\u00e9 cr\u00e8me et la cr\u00e8me br\u00fbl\u00e9e sont d\u00e9licieux \u00e0 No\u00ebl. " * 20
    assert extract_text(french.encode("cp1252"), "a.txt") == french
    russian = "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430 \u0441\u0435\u0433\u043e\u0434\u043d\u044f? " * 20
    assert extract_text(russian.encode("cp1251"), "a.txt") == russian


def test_encoding_detection_is_bounded_on_a_large_file() -> None:
    text = ("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e \u00e0 la fran\u00e7aise, na\u00efve fa\u00e7ade. " * 150_000)
    data = text.encode("cp1252")  # ~7 MB that is not UTF-8: detection reads a sample, not the whole
    start = time.perf_counter()
    assert extract_text(data, "big.txt") == text
    assert time.perf_counter() - start < 5.0


def test_html_keeps_the_visible_text_only() -> None:
    page = """<!DOCTYPE html><html><head><title>The title</title><meta charset="utf-8">
    <style>body { color: red; } .hidden { display: none }</style>
    <script>var secret = "do not index"; if (a < b) { alert(1) }</script></head>
    <body><nav>Home | About</nav><h1>Heading</h1><p>First   paragraph
    with <b>bold</b> &amp; <i>entities</i> &eacute;&#233;.</p>
    <noscript>enable js</noscript><ul><li>one</li><li>two</li></ul>
    <table><tr><th>Name</th><th>Size</th></tr><tr><td>a</td><td>1</td></tr></table>
    <svg><text>vector label</text></svg><p>Last<br>line</p></body></html>"""
    text = extract_text(page.encode("utf-8"), "page.html")
    assert text == ("The title\n\nHome | About\n\nHeading\n\nFirst paragraph with bold & entities \u00e9\u00e9.\n\n"
                    "one\ntwo\n\nName | Size\na | 1\n\nLast\nline")
    for hidden in ("secret", "color", "enable js", "vector label", "alert"):
        assert hidden not in text


def test_html_without_closing_tags_or_head_still_reads() -> None:
    assert html_to_text("<title>T</title><p>one<p>two") == "T\n\none\n\ntwo"
    assert html_to_text("<html><head><title>T</title><body>shown") == "T\n\nshown"
    assert html_to_text("<script>never closed <p>hidden") == ""


def test_pdf_pages_in_order() -> None:
    data = make_pdf([["Page one: the (bracketed) line", "and a back\\slash"], ["Page two caf\u00e9"]])
    text = extract_text(data, "doc.pdf")
    assert text.index("Page one: the (bracketed) line") < text.index("and a back\\slash") < text.index("Page two caf\u00e9")


def test_an_encrypted_pdf_opens_with_the_empty_password_and_fails_clearly_with_another() -> None:
    from pypdf import PdfReader, PdfWriter

    def encrypted(password: str) -> bytes:
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["locked text"]]))))
        writer.encrypt(user_password=password, owner_password="owner", algorithm="RC4-128")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    assert "locked text" in extract_text(encrypted(""), "open.pdf")
    with pytest.raises(InvalidFile, match="encrypted with a password"):
        extract_text(encrypted("secret"), "locked.pdf")


def test_docx_paragraphs_and_tables_in_reading_order() -> None:
    data = make_docx(["Intro paragraph", "Second one"], [["Name", "Size"], ["alpha", "1"]], ["After the table"])
    assert extract_text(data, "doc.docx") == "Intro paragraph\nSecond one\nName | Size\nalpha | 1\n\nAfter the table"


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return out.getvalue()


@pytest.mark.parametrize(("name", "data"), [
    ("doc.pdf", make_pdf([["some text"]])[:200]),
    ("doc.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8),
    ("doc.pdf", make_pdf([["x"]]).replace(b"/Pages 2 0 R", b"/Pages 9 0 R")),
    ("doc.pdf", b"not a pdf at all"),
    ("doc.docx", b"not a zip"),
    ("doc.docx", b"PK\x03\x04" + b"\x00" * 100),
    ("doc.docx", make_docx(["fine"])[:300]),
    ("doc.docx", _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document"})),
    ("doc.docx", _zip({"hello.txt": b"a zip, but no Word document in it"})),
])
def test_corrupt_pdf_and_docx_are_invalid_files_with_a_reason(name: str, data: bytes) -> None:
    with pytest.raises(InvalidFile) as caught:
        extract_text(data, name)
    assert caught.value.code == "invalid_file"
    assert str(caught.value).startswith(("could not read the", "the file contains no text"))


@pytest.mark.parametrize(("name", "message"), [
    ("setup.exe", "unsupported file type: .exe"),
    ("photo.png", "unsupported file type: .png"),
    ("archive.tar.gz", "unsupported file type: .gz"),
    ("old.doc", "unsupported file type: .doc (legacy Word files are not read; save it as .docx)"),
    ("sheet.xlsx", "unsupported file type: .xlsx (spreadsheets are not read; export it as .csv)"),
    ("mystery", "unsupported file type: binary content"),
])
def test_unsupported_types_say_which(name: str, message: str) -> None:
    with pytest.raises(UnsupportedFile) as caught:
        extract_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), name)
    assert str(caught.value) == message
    assert caught.value.code == "unsupported_file"


@pytest.mark.parametrize(("name", "data", "message"), [
    ("empty.txt", b"", "the file contains no text"),
    ("blank.md", b"  \n\t\n", "the file contains no text"),
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "the file is not text: it holds binary content"),
    ("control.txt", bytes(range(1, 9)) * 50, "the file is not text: it holds binary content"),
    ("blank.pdf", make_pdf([[]]), "the file contains no text (a scanned PDF needs OCR, which is not done)"),
    ("blank.docx", make_docx([]), "the file contains no text"),
    ("blank.html", b"<html><script>x()</script></html>", "the file contains no text"),
])
def test_files_without_text_are_invalid(name: str, data: bytes, message: str) -> None:
    with pytest.raises(InvalidFile) as caught:
        extract_text(data, name)
    assert str(caught.value) == message


_NAMES = st.sampled_from(["a.txt", "a.pdf", "a.docx", "a.html", "a.json", "a.py", "noext", "a.exe", ""])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048), name=_NAMES, mime=st.sampled_from([None, "text/html", "application/pdf"]))
def test_any_bytes_give_text_or_unsupported_file_never_another_exception(data: bytes, name: str,
                                                                         mime: str | None) -> None:
    try:
        assert isinstance(extract_text(data, name, mime), str)
    except UnsupportedFile as exc:
        assert str(exc) and exc.code in ("unsupported_file", "invalid_file")


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=1024), cut=st.integers(min_value=0, max_value=4000))
def test_damaged_real_pdf_and_docx_never_raise_another_exception(data: bytes, cut: int) -> None:
    for name, good in (("a.pdf", make_pdf([["some text", "more"]])), ("a.docx", make_docx(["some text"]))):
        damaged = good[:cut] + data + good[cut + len(data):]
        with contextlib.suppress(UnsupportedFile):  # anything else fails the test
            extract_text(damaged, name)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=500))
def test_any_markup_is_read_as_html(markup: str) -> None:
    assert isinstance(html_to_text(markup), str)
