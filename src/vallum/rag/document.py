"""What extraction makes of a document: visible text, hidden segments, and maps back to the source.

Every character of the visible text and of each hidden segment maps back to a range of `source` (the
decoded file for text formats; for PDFs, the plain text of every page, pages joined by form feeds), so a
finding in extracted text is reported at a line and column of the file a person can open.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from enum import StrEnum

from vallum.text.offsets import MapBuilder, OffsetMap


class Format(StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    PDF = "pdf"


class Hiding(StrEnum):
    """Why a reader of the rendered document does not see a piece of text that an indexer does."""

    HIDDEN_ATTRIBUTE = "hidden_attribute"  # <div hidden>
    DISPLAY_NONE = "display_none"
    VISIBILITY_HIDDEN = "visibility_hidden"
    ZERO_OPACITY = "zero_opacity"  # opacity:0, transparent colour, PDF fill alpha 0
    ZERO_FONT_SIZE = "zero_font_size"
    TINY_TEXT = "tiny_text"  # font size under about one point / pixel
    SAME_COLOUR = "same_colour"  # text colour (nearly) equal to its declared background
    WHITE_TEXT = "white_text"  # white or near-white text on the default white background
    OFF_SCREEN = "off_screen"  # positioned or indented far outside the viewport
    CLIPPED = "clipped"  # zero-size box with overflow hidden, clip: rect(0 0 0 0)
    ARIA_HIDDEN = "aria_hidden"
    COMMENT = "comment"  # HTML / Markdown comments
    ALT_TEXT = "alt_text"
    TITLE_ATTRIBUTE = "title_attribute"
    ARIA_LABEL = "aria_label"
    META = "meta"  # <meta content>, PDF document information
    NOSCRIPT = "noscript"
    TEMPLATE = "template"
    HIDDEN_INPUT = "hidden_input"
    LINK_TITLE = "link_title"  # Markdown [text](url "title")
    LINK_REFERENCE = "link_reference"  # Markdown [id]: url "title"
    UNICODE_TAGS = "unicode_tags"  # ASCII smuggled in U+E0000 tag characters
    INVISIBLE_RENDER_MODE = "invisible_render_mode"  # PDF text render mode 3 or 7
    OFF_PAGE = "off_page"  # PDF text placed outside the page's crop box
    ANNOTATION = "annotation"  # PDF annotation contents (comments, form tooltips)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a range of extracted text sits in the source: offsets, 1-based line and column, page."""

    start: int
    end: int
    line: int
    column: int
    page: int | None = None
    approximate: bool = False

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "start": self.start,
            "end": self.end,
            "line": self.line,
            "column": self.column,
        }
        if self.page is not None:
            out["page"] = self.page
        if self.approximate:
            out["approximate"] = True
        return out

    def __str__(self) -> str:
        where = f"line {self.line}:{self.column}"
        if self.page is not None:
            where = f"page {self.page}, {where}"
        return f"~{where}" if self.approximate else where


@dataclass(frozen=True, slots=True)
class HiddenSegment:
    """A run of text the rendered document hides, why, and where it came from."""

    text: str
    reason: Hiding
    start: int  # source range the whole segment came from
    end: int
    offsets: OffsetMap | None = None  # segment text -> source; None: text is source[start:end]
    element: str = ""  # e.g. "div#promo > span", "img[alt]", "page 2"
    approximate: bool = False  # the source position was found by search (PDF) or not at all

    def source_range(self, start: int, end: int) -> tuple[int, int]:
        """Source range of segment characters [start, end)."""
        n = len(self.text)
        start, end = min(max(start, 0), n), min(max(end, 0), n)
        if self.offsets is None:
            return self.start + start, self.start + max(start, end)
        return self.offsets.resolve(start, max(start, end))


@dataclass(frozen=True, slots=True)
class ExtractedDocument:
    name: str
    format: Format
    source: str
    visible: str
    visible_offsets: OffsetMap | None  # visible text -> source; None: visible is source itself
    hidden: tuple[HiddenSegment, ...] = ()
    page_starts: tuple[int, ...] = ()  # PDF: offset in source where each page's text begins
    notes: tuple[str, ...] = ()  # what extraction could not judge (e.g. text in PDF form XObjects)
    _line_starts: list[int] = field(default_factory=list, repr=False, compare=False)

    def visible_range(self, start: int, end: int) -> tuple[int, int]:
        n = len(self.visible)
        start, end = min(max(start, 0), n), min(max(end, start), n)
        if self.visible_offsets is None:
            return start, end
        return self.visible_offsets.resolve(start, end)

    def locate(self, start: int, end: int, *, approximate: bool = False) -> Location:
        """Line, column and page of source range [start, end)."""
        if not self._line_starts:
            self._line_starts.extend(_line_starts(self.source))
        page = None
        line_starts = self._line_starts
        if self.page_starts and start >= self.page_starts[0]:
            index = bisect_right(self.page_starts, start) - 1
            page = index + 1
            page_start = self.page_starts[index]
            first_line = bisect_right(line_starts, page_start) - 1
            line_index = bisect_right(line_starts, start) - 1
            return Location(
                start,
                end,
                line_index - first_line + 1,
                start - line_starts[line_index] + 1,
                page,
                approximate,
            )
        line_index = bisect_right(line_starts, start) - 1
        return Location(start, end, line_index + 1, start - line_starts[line_index] + 1, None, approximate)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    find = text.find
    i = find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = find("\n", i + 1)
    return starts


class Assembler:
    """Builds an extracted text from pieces of the source appended in source order, with its map.

    Separators are held back until more text follows, so a text never starts or ends with one.
    """

    __slots__ = ("_builder", "_end", "_pending", "_started")

    def __init__(self, source_len: int) -> None:
        self._builder = MapBuilder(source_len)
        self._end = 0  # source position reached so far
        self._pending: tuple[str, int] | None = None
        self._started = False

    def _flush(self) -> None:
        if self._pending is not None:
            text, point = self._pending
            self._builder.block(text, point, point)
            self._pending = None

    def linear(self, text: str, source_start: int) -> None:
        """Append text copied verbatim from source[source_start:]."""
        if text:
            self._flush()
            self._builder.linear(text, source_start)
            self._end = source_start + len(text)
            self._started = True

    def block(self, text: str, source_start: int, source_end: int) -> None:
        """Append text that as a whole stands for source[source_start:source_end] (an entity, say)."""
        if text:
            self._flush()
            self._builder.block(text, source_start, source_end)
            self._end = max(self._end, source_end)
            self._started = True

    def separator(self, text: str = "\n", at: int | None = None) -> None:
        """A break with no source text of its own; a newline wins over a space at the same place."""
        if not self._started:
            return
        point = max(self._end, at if at is not None else self._end)
        if self._pending is None or (text == "\n" and self._pending[0] != "\n"):
            self._pending = (text, self._end if self._pending is None else self._pending[1])
        self._end = point

    @property
    def empty(self) -> bool:
        return not self._started

    def build(self) -> tuple[str, OffsetMap | None]:
        return self._builder.build()
