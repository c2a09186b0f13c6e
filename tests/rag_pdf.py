"""Builds small PDFs for the RAG tests with pypdf alone: pages whose content streams the test writes."""

from __future__ import annotations

import io

from pypdf import PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    NumberObject,
    TextStringObject,
)


def text_op(text: str, x: float = 72, y: float = 720, size: float = 12, before: str = "") -> str:
    """A BT..ET block that shows `text` at (x, y) in Helvetica, after the operators in `before`."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"q BT {before} /F1 {size} Tf {x} {y} Td ({escaped}) Tj ET Q\n"


def make_pdf(
    pages: list[str],
    *,
    metadata: dict[str, str] | None = None,
    annotations: dict[int, str] | None = None,
    alpha_zero_state: bool = False,
) -> bytes:
    """A PDF with one page per content stream (US Letter, Helvetica as /F1, optional /GS0 with ca 0)."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
                NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
            }
        )
    )
    for index, content in enumerate(pages):
        page = writer.add_blank_page(612, 792)
        resources = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        if alpha_zero_state:
            resources[NameObject("/ExtGState")] = DictionaryObject(
                {NameObject("/GS0"): DictionaryObject({NameObject("/ca"): FloatObject(0)})}
            )
        page[NameObject("/Resources")] = resources
        stream = DecodedStreamObject()
        stream.set_data(content.encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        if annotations and index in annotations:
            note = DictionaryObject(
                {
                    NameObject("/Type"): NameObject("/Annot"),
                    NameObject("/Subtype"): NameObject("/Text"),
                    NameObject("/Rect"): ArrayObject(
                        [NumberObject(0), NumberObject(0), NumberObject(10), NumberObject(10)]
                    ),
                    NameObject("/Contents"): TextStringObject(annotations[index]),
                }
            )
            page[NameObject("/Annots")] = ArrayObject([writer._add_object(note)])
    if metadata:
        writer.add_metadata({f"/{k}": v for k, v in metadata.items()})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
