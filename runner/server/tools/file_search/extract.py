"""Plain text out of an uploaded file's bytes: text and source files, HTML, PDF (pypdf) and Word .docx (python-docx).

The type comes from the file name's extension (as the hosted API decides it), then the MIME type, and for a name
without an extension from the bytes themselves. Whatever cannot be read raises `UnsupportedFile`, whose message
says why (the vector store file's `last_error.message`) and whose `code` is the API's `last_error.code`:
`unsupported_file` for a type this reader does not take, `invalid_file` (the `InvalidFile` subclass) for a file of
a supported type that is corrupt, encrypted, undecodable or holds no text. No other exception escapes.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import unicodedata
from html.parser import HTMLParser
from pathlib import PurePath

import charset_normalizer


class UnsupportedFile(Exception):
    """The file cannot be indexed; the message says why (it becomes the vector store file's `last_error`)."""

    code = "unsupported_file"


class InvalidFile(UnsupportedFile):
    """A file of a supported type that cannot be read: corrupt, encrypted, undecodable or without text."""

    code = "invalid_file"


_PLAIN = {
    "txt", "text", "md", "markdown", "mdx", "rst", "adoc", "asciidoc", "org", "log", "csv", "tsv", "json", "jsonl",
    "ndjson", "yaml", "yml", "toml", "ini", "cfg", "conf", "properties", "env", "xml", "tex", "bib", "srt", "vtt",
}
_CODE = {
    "py", "pyi", "ipynb", "js", "mjs", "cjs", "jsx", "ts", "tsx", "java", "c", "h", "cc", "cpp", "cxx", "hpp", "hh",
    "hxx", "cs", "go", "rb", "rs", "sh", "bash", "zsh", "fish", "ps1", "bat", "cmd", "php", "swift", "kt", "kts",
    "scala", "sql", "css", "scss", "sass", "less", "lua", "pl", "pm", "r", "m", "mm", "dart", "ex", "exs", "erl",
    "hrl", "hs", "ml", "mli", "clj", "cljs", "groovy", "gradle", "vue", "svelte", "proto", "graphql", "gql", "vb",
    "f90", "f", "jl", "nim", "zig", "elm", "tf", "hcl", "cmake", "mk", "makefile", "dockerfile", "diff", "patch",
}
_HTML = {"html", "htm", "xhtml"}
_HINTS = {
    "doc": "legacy Word files are not read; save it as .docx",
    "ppt": "presentations are not read", "pptx": "presentations are not read",
    "xls": "spreadsheets are not read; export it as .csv", "xlsx": "spreadsheets are not read; export it as .csv",
    "odt": "OpenDocument files are not read; save it as .docx", "rtf": "RTF is not read; save it as .docx or .txt",
}
_MIME = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/html": "html", "application/xhtml+xml": "html",
    "application/json": "text", "application/xml": "text", "application/javascript": "text",
    "application/x-yaml": "text", "application/yaml": "text", "application/x-sh": "text", "application/toml": "text",
}
_DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

_SNIFF_BYTES = 8192  # how much of a file the binary check and the MIME sniffing look at
_DETECT_BYTES = 64 * 1024  # charset detection reads a sample: its cost grows with the input, this bounds it
_NULL_HANDLER = logging.NullHandler()  # one instance: adding it again is a no-op
_BOMS = [  # longest first: the UTF-32 LE mark begins with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
]


def extract_text(data: bytes, filename: str, mime_type: str | None = None) -> str:
    """The text of a file, by its type: the extension of `filename`, else `mime_type`, else sniffed from the bytes.

    Raises UnsupportedFile (InvalidFile for a corrupt or empty file of a supported type); nothing else.
    Line ends come back as "\\n"; a file that holds no text at all is an InvalidFile.
    """
    kind = _kind(data, filename, mime_type)
    try:
        if kind == "pdf":
            text = _pdf_text(data)
        elif kind == "docx":
            text = _docx_text(data)
        elif kind == "html":
            text = html_to_text(decode_text(data))
        else:
            text = decode_text(data)
    except UnsupportedFile:
        raise
    except RecursionError as exc:  # deeply nested markup: python-docx/lxml or the HTML stack
        raise InvalidFile(f"could not read the {kind.upper()} file: nested too deeply") from exc
    except Exception as exc:  # a reader's own failure on hostile bytes is a bad file, never a server error
        raise InvalidFile(f"could not read the {kind.upper()} file: {_reason(exc)}") from exc
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    if not text.strip():
        raise InvalidFile("the file contains no text" + (" (a scanned PDF needs OCR, which is not done)"
                                                          if kind == "pdf" and data else ""))
    return text


def _kind(data: bytes, filename: str, mime_type: str | None) -> str:
    """pdf, docx, html or text; UnsupportedFile for anything else."""
    name = PurePath(filename or "").name.lower()
    ext = name.rsplit(".", 1)[1] if "." in name.lstrip(".") else ""
    if not ext and name in ("makefile", "dockerfile", "readme", "license", "changelog"):
        return "text"
    if ext == "pdf":
        return "pdf"
    if ext == "docx":
        return "docx"
    if ext in _HTML:
        return "html"
    if ext in _PLAIN or ext in _CODE:
        return "text"
    mime = (mime_type or "").split(";", 1)[0].strip().lower()
    if mime in _MIME:
        return _MIME[mime]
    if mime.startswith("text/"):
        return "text"
    if ext:
        hint = _HINTS.get(ext)
        raise UnsupportedFile(f"unsupported file type: .{ext}" + (f" ({hint})" if hint else ""))
    # no extension and no telling MIME type: the bytes decide
    head = data[:_SNIFF_BYTES]
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04") and b"word/" in data[:65536]:
        return "docx"
    if _looks_binary(head):
        raise UnsupportedFile("unsupported file type: binary content")
    if re.match(rb"\s*(<!doctype html|<html)", head[:512], re.IGNORECASE):
        return "html"
    return "text"


def _looks_binary(head: bytes) -> bool:
    """Whether the first bytes are not text: a NUL byte outside UTF-16/32, as `file` and git decide it."""
    if any(head.startswith(bom) for bom, _ in _BOMS):
        return False
    return b"\x00" in head


def decode_text(data: bytes) -> str:
    """Bytes to text: a byte-order mark's encoding, else UTF-8, else the encoding charset-normalizer detects
    from a 64 KiB sample (bounded time). InvalidFile for binary content or an encoding that cannot be told."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise InvalidFile(f"the text is not valid {encoding.upper()}: {exc.reason}") from exc
    if _looks_binary(data[:_SNIFF_BYTES]):
        raise InvalidFile("the file is not text: it holds binary content")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        best = charset_normalizer.from_bytes(data[:_DETECT_BYTES]).best()
        if best is None:
            raise InvalidFile("the text encoding could not be detected (is it a binary file?)") from None
        text = data.decode(best.encoding, errors="replace")
    if _mostly_control(text[:_SNIFF_BYTES]):
        raise InvalidFile("the file is not text: it holds binary content")
    return text


def _mostly_control(sample: str) -> bool:
    """Whether more than 5% of the characters are control characters other than whitespace (binary decoded)."""
    if not sample:
        return False
    controls = sum(1 for ch in sample if ch not in "\t\n\r\f\v\x1b" and unicodedata.category(ch) == "Cc")
    return controls > len(sample) * 0.05


def _reason(exc: BaseException) -> str:
    """A one-line reason from a reader's exception."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _pdf_text(data: bytes) -> str:
    """The text of every page, pages separated by a blank line."""
    import pypdf  # lazily: the backend starts without loading the PDF reader

    # pypdf logs each flaw it works around ("EOF marker not found"); with no handler set, Python's last-resort
    # handler would print them on stderr. A NullHandler leaves them to whatever logging the application sets up
    logging.getLogger("pypdf").addHandler(_NULL_HANDLER)

    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # many "encrypted" PDFs only restrict printing: the empty password opens them
        except Exception as exc:
            raise InvalidFile(f"the PDF is encrypted: {_reason(exc)}") from exc
        if not opened:
            raise InvalidFile("the PDF is encrypted with a password")
    return "\n\n".join(page.extract_text() or "" for page in reader.pages)


def _docx_text(data: bytes) -> str:
    """The paragraphs and tables of a Word document in reading order; table cells separated by " | "."""
    import docx  # lazily: the backend starts without loading python-docx and lxml
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))

    def lines_of(container: object) -> list[str]:
        lines: list[str] = []
        for block in container.iter_inner_content():  # type: ignore[attr-defined]
            if not isinstance(block, Table):
                lines.append(block.text)
                continue
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:
                    text = " ".join(line for line in lines_of(cell) if line.strip())
                    if not cells or text != cells[-1]:  # a merged cell repeats in each grid column it spans
                        cells.append(text)
                lines.append(" | ".join(cells))
            lines.append("")
        return lines

    return "\n".join(lines_of(document))


_SKIP = {"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas"}
_BLOCK = {
    "p", "div", "section", "article", "header", "footer", "nav", "aside", "main", "h1", "h2", "h3", "h4", "h5",
    "h6", "ul", "ol", "dl", "table", "blockquote", "pre", "figure", "figcaption", "form", "fieldset", "address",
    "hr", "details", "summary", "title", "body",
}
_LINE = {"br", "li", "dt", "dd", "tr", "caption", "option"}
_CELL = {"td", "th"}


class _TextParser(HTMLParser):
    """Collects the visible text of an HTML document: blocks become paragraphs, scripts and styles are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping: list[str] = []  # the open elements whose text is not shown
        self.pre = 0
        self.cells = 0  # cells seen in the current table row, to put " | " between them

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping.append(tag)
        elif not self.skipping:
            self._break(tag, start=True)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP and not self.skipping:
            self._break(tag, start=True)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.skipping:
            del self.skipping[len(self.skipping) - 1 - self.skipping[::-1].index(tag):]  # and whatever it held
        elif not self.skipping:
            self._break(tag, start=False)

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))

    def _break(self, tag: str, *, start: bool) -> None:
        if tag == "pre":
            self.pre = self.pre + 1 if start else max(0, self.pre - 1)
        if tag in _BLOCK:
            self.parts.append("\n\n")
        elif tag in _LINE and start:  # a new line before each item or row, none after
            self.parts.append("\n")
            if tag == "tr":
                self.cells = 0
        elif tag in _CELL and start:
            if self.cells:
                self.parts.append(" | ")
            self.cells += 1


def html_to_text(html: str) -> str:
    """The visible text of an HTML document (stdlib html.parser): blocks separated by a blank line, table cells
    by " | ", scripts and styles dropped, entities decoded."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    out: list[str] = []
    for line in "".join(parser.parts).split("\n"):
        line = line.strip()
        if line or (out and out[-1]):  # one blank line between paragraphs, however many blocks closed
            out.append(line)
    return "\n".join(out).strip()
