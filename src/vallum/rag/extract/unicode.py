"""Text smuggled in Unicode tag characters (U+E0020..U+E007E spell ASCII and render as nothing)."""

from __future__ import annotations

import re

from vallum.rag.document import Assembler, HiddenSegment, Hiding
from vallum.text.offsets import OffsetMap

_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
_TAG_TO_ASCII = {code: chr(code - 0xE0000) for code in range(0xE0020, 0xE007F)}
_DROP = {code: None for code in range(0xE0000, 0xE0080) if code not in _TAG_TO_ASCII}


def unicode_tag_segments(text: str, offsets: OffsetMap | None, source_len: int) -> list[HiddenSegment]:
    """One hidden segment per run of tag characters that spells something, mapped to the source."""
    segments: list[HiddenSegment] = []
    if text.isascii():
        return segments
    for run in _TAG_RUN.finditer(text):
        decoded = run.group().translate(_TAG_TO_ASCII).translate(_DROP).strip()
        if not decoded:
            continue
        start, end = offsets.resolve(*run.span()) if offsets is not None else run.span()
        assembler = Assembler(source_len)
        assembler.block(decoded, start, end)
        smuggled, smuggled_map = assembler.build()
        segments.append(
            HiddenSegment(smuggled, Hiding.UNICODE_TAGS, start, end, smuggled_map, "tag characters")
        )
    return segments
