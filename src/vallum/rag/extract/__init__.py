"""Document extraction per format: `extract(data, name, format)` -> ExtractedDocument.

The format comes from the caller, else the file name's extension, else the first bytes (a PDF header,
an HTML doctype or root tag); anything else is read as plain text.
"""

from __future__ import annotations

import re
from pathlib import PurePath

from vallum.rag.document import ExtractedDocument, Format
from vallum.rag.errors import DocumentError
from vallum.rag.extract.decode import decode_text
from vallum.rag.extract.html import extract_html
from vallum.rag.extract.markdown import extract_markdown
from vallum.rag.extract.text import extract_text

EXTENSIONS: dict[str, Format] = {
    ".txt": Format.TEXT,
    ".text": Format.TEXT,
    ".log": Format.TEXT,
    ".csv": Format.TEXT,
    ".md": Format.MARKDOWN,
    ".markdown": Format.MARKDOWN,
    ".mdx": Format.MARKDOWN,
    ".html": Format.HTML,
    ".htm": Format.HTML,
    ".xhtml": Format.HTML,
    ".pdf": Format.PDF,
}
_HTML_START = re.compile(
    rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE | re.DOTALL
)

__all__ = ["EXTENSIONS", "detect_format", "extract", "extract_html", "extract_markdown", "extract_text"]


def detect_format(name: str, data: bytes) -> Format:
    """PDF when the bytes say so; else the format the extension names; else sniffed from the first bytes."""
    head = data[:1024]
    if head.lstrip().startswith(b"%PDF-"):
        return Format.PDF
    by_extension = EXTENSIONS.get(PurePath(name).suffix.lower())
    if by_extension is not None:
        return by_extension
    if _HTML_START.match(head):
        return Format.HTML
    return Format.TEXT


def extract(data: bytes, name: str = "<document>", format: Format | str | None = None) -> ExtractedDocument:
    """Extract one document; raises DocumentError (with the reason, not the name) when it cannot."""
    kind = Format(format) if format is not None else detect_format(name, data)
    if kind is Format.PDF:
        from vallum.rag.extract.pdf import extract_pdf  # pypdf is only imported for PDFs

        return extract_pdf(data, name)
    if data.lstrip()[:5].startswith(b"%PDF-"):
        raise DocumentError(f"the file is a PDF, not {kind.value}; give it a .pdf name or format='pdf'")
    source = decode_text(data, html=kind is Format.HTML)
    if kind is Format.HTML:
        return extract_html(source, name)
    if kind is Format.MARKDOWN:
        return extract_markdown(source, name)
    return extract_text(source, name)
