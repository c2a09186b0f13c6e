"""Bytes of a text document to str: BOMs honoured, UTF-8 by default, binary junk refused with a reason."""

from __future__ import annotations

import codecs
import re

from vallum.rag.errors import DocumentError

SNIFF_BYTES = 8192
# A text file may hold a stray control character; this share of them in the first bytes means binary.
MAX_CONTROL_SHARE = 0.10
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_HTML_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE)
_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\r\x0c\x1b")


def decode_text(data: bytes, *, html: bool = False) -> str:
    """Decode a text document. HTML may declare its charset in a <meta> tag; everything else is UTF-8.

    Raises DocumentError for binary data and for bytes that are not valid in the encoding.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode(data[len(bom) :], encoding)
    head = data[:SNIFF_BYTES]
    if b"\x00" in head:
        raise DocumentError(
            "binary data (NUL bytes) where a text, Markdown or HTML document was expected; "
            "PDFs must start with %PDF-, other formats are not supported"
        )
    if head and len(head) - len(head.translate(None, _CONTROL)) > MAX_CONTROL_SHARE * len(head):
        raise DocumentError("binary data (mostly control bytes) where a text document was expected")
    encoding = "utf-8"
    if html:
        declared = _HTML_CHARSET.search(data[:4096])
        if declared is not None:
            encoding = _known_encoding(declared.group(1).decode("ascii"))
    return _decode(data, encoding)


def _known_encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise DocumentError(
            f"the document declares charset {name!r}, which Python does not know; re-encode it as UTF-8"
        ) from None


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 4].hex(" ")
        raise DocumentError(
            f"not valid {encoding}: bytes {bad} at offset {exc.start} ({exc.reason}); "
            "re-encode the file as UTF-8 (or declare its charset in a <meta> tag for HTML)"
        ) from None
