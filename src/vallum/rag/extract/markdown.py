"""Markdown: rendered text, and what rendering hides (comments, link titles, image alt text, reference
definitions such as the `[//]: # (comment)` idiom, and hidden inline HTML).

Markdown is read as what it is for an indexer: text with some HTML in it. The HTML tokenizer runs over
the source with code masked (fenced blocks, code spans and autolinks keep their `<` and `&` literal), then
the Markdown constructs are cut out of the visible text. Line breaks are kept as written.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

from vallum.rag.document import Assembler, ExtractedDocument, Format, HiddenSegment, Hiding
from vallum.rag.extract.html import Piece, parse_html
from vallum.rag.extract.unicode import unicode_tag_segments

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^ {0,3}\1[`~]*[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
_AUTOLINK = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9+.-]{1,31}:[^\s<>]*|[^\s<>@]+@[^\s<>]+)>")
_TITLE = r"""(?:"([^"\n]*)"|'([^'\n]*)'|\(([^()\n]*)\))"""
_DESTINATION = r"(?:<[^<>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"
_IMAGE = re.compile(rf"!\[([^\[\]\n]*)\]\(\s*{_DESTINATION}(?:\s+{_TITLE})?\s*\)")
_LINK = re.compile(rf"(?<!!)\[([^\[\]\n]*)\]\(\s*{_DESTINATION}(?:\s+{_TITLE})?\s*\)")
_REFERENCE = re.compile(
    rf"^ {{0,3}}\[([^\]\n]+)\]:[ \t]*(?:<[^<>\n]*>|\S+)(?:\s+{_TITLE})?[ \t]*$", re.MULTILINE
)
_MASKED = str.maketrans({"<": " ", "&": " "})


@dataclass(frozen=True, slots=True)
class _Construct:
    start: int
    end: int
    cuts: tuple[tuple[int, int], ...]  # source ranges removed from the visible text
    hidden: tuple[tuple[int, int, Hiding, str], ...]  # source ranges that become hidden segments


def extract_markdown(source: str, name: str = "<markdown>") -> ExtractedDocument:
    masked = _mask_code(source)
    parsed = parse_html(masked, style_source=source)
    constructs = _constructs(masked, parsed.pieces)
    cuts = sorted(cut for c in constructs for cut in c.cuts)
    assembler = Assembler(len(source))
    cut_index = 0
    for piece in parsed.pieces:
        if piece.is_break:
            assembler.separator("\n", piece.start)
            continue
        if not piece.linear:
            assembler.block(piece.text, piece.start, piece.end)
            continue
        position = piece.start
        while cut_index < len(cuts) and cuts[cut_index][1] <= position:
            cut_index += 1
        index = cut_index
        while position < piece.end:
            if index < len(cuts) and cuts[index][0] < piece.end:
                cut_start, cut_end = cuts[index]
                if cut_start > position:
                    assembler.linear(source[position:cut_start], position)
                position = max(position, cut_end)
                index += 1
            else:
                assembler.linear(source[position : piece.end], position)
                position = piece.end
    visible, offsets = assembler.build()
    hidden = [_unmasked(segment, source) for segment in parsed.hidden]
    for construct in constructs:
        for start, end, reason, element in construct.hidden:
            text = source[start:end].strip()
            if text:
                lead = len(source[start:end]) - len(source[start:end].lstrip())
                hidden.append(
                    HiddenSegment(text, reason, start + lead, start + lead + len(text), None, element)
                )
    hidden.extend(unicode_tag_segments(visible, offsets, len(source)))
    hidden.sort(key=lambda segment: segment.start)
    return ExtractedDocument(name, Format.MARKDOWN, source, visible, offsets, tuple(hidden))


def _mask_code(source: str) -> str:
    """The source with `<` and `&` inside code and autolinks blanked, so they are not read as HTML."""
    if "<" not in source and "&" not in source:
        return source
    ranges = [m.span() for m in _FENCE.finditer(source)]
    ranges += [m.span() for m in _CODE_SPAN.finditer(source) if not _inside(m.start(), ranges)]
    ranges += [m.span() for m in _AUTOLINK.finditer(source) if not _inside(m.start(), ranges)]
    if not ranges:
        return source
    ranges.sort()
    parts: list[str] = []
    done = 0
    for start, end in ranges:
        if start < done:
            continue
        parts.append(source[done:start])
        parts.append(source[start:end].translate(_MASKED))
        done = end
    parts.append(source[done:])
    return "".join(parts)


def _inside(position: int, ranges: list[tuple[int, int]]) -> bool:
    return any(start <= position < end for start, end in ranges)


def _constructs(masked: str, pieces: list[Piece]) -> list[_Construct]:
    """Images, links and reference definitions that lie wholly inside one piece of visible text."""
    spans = [(p.start, p.end) for p in pieces if p.linear and not p.is_break]
    found: list[_Construct] = []
    hidden: tuple[tuple[int, int, Hiding, str], ...]
    for match in _REFERENCE.finditer(masked):
        title = _title_span(match, 2)
        hidden = ((*title, Hiding.LINK_REFERENCE, f"[{match.group(1)}]:"),) if title else ()
        found.append(_Construct(match.start(), match.end(), ((match.start(), match.end()),), hidden))
    for match in _IMAGE.finditer(masked):
        alt = (match.start(1), match.end(1), Hiding.ALT_TEXT, "image alt")
        title = _title_span(match, 2)
        hidden = (alt, (*title, Hiding.LINK_TITLE, "image title")) if title else (alt,)
        found.append(_Construct(match.start(), match.end(), ((match.start(), match.end()),), hidden))
    for match in _LINK.finditer(masked):
        title = _title_span(match, 2)
        hidden = ((*title, Hiding.LINK_TITLE, "link title"),) if title else ()
        cuts = ((match.start(), match.start() + 1), (match.end(1), match.end()))
        found.append(_Construct(match.start(), match.end(), cuts, hidden))
    kept: list[_Construct] = []
    starts = [start for start, _ in spans]
    taken_until = -1
    for construct in sorted(found, key=lambda c: (c.start, -c.end)):
        if construct.start < taken_until:
            continue  # overlaps a construct already kept (they are sorted by start)
        index = bisect_right(starts, construct.start) - 1
        if index >= 0 and construct.end <= spans[index][1]:
            kept.append(construct)
            taken_until = construct.end
    return kept


def _title_span(match: re.Match[str], first_group: int) -> tuple[int, int] | None:
    for group in range(first_group, first_group + 3):
        if match.group(group) is not None:
            return match.start(group), match.end(group)
    return None


def _unmasked(segment: HiddenSegment, source: str) -> HiddenSegment:
    """Hidden text from the masked source, with code characters restored from the real source."""
    if segment.offsets is not None or source[segment.start : segment.end] == segment.text:
        return segment
    return HiddenSegment(
        source[segment.start : segment.end], segment.reason, segment.start, segment.end, None, segment.element
    )
