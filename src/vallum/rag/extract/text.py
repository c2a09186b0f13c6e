"""Plain text: what is there is what a reader sees, except characters that render as nothing."""

from __future__ import annotations

from vallum.rag.document import ExtractedDocument, Format
from vallum.rag.extract.unicode import unicode_tag_segments


def extract_text(source: str, name: str = "<text>") -> ExtractedDocument:
    hidden = tuple(unicode_tag_segments(source, None, len(source)))
    return ExtractedDocument(name, Format.TEXT, source, source, None, hidden)
