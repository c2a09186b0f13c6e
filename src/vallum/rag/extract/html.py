"""HTML: the text a reader sees, and separately what the page hides from readers but not from indexers.

The stdlib tokenizer (html.parser) is used because it reports where every token starts, so each
character of extracted text maps back to the file; it is also forgiving of broken markup. Hidden are:
elements with `hidden`, `aria-hidden="true"`, `display:none`, `visibility:hidden`, `opacity:0`,
zero or tiny font sizes, text in the colour of its background (or white on the default white page),
off-screen positioning and clipping (inline styles, and <style> rules with simple selectors);
comments; alt, title and aria-label attributes; <meta> content; <noscript> and <template>; values
of hidden inputs. Script and style contents are code, not text, and are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from html.entities import name2codepoint
from html.parser import HTMLParser

from vallum.rag.document import Assembler, ExtractedDocument, Format, HiddenSegment, Hiding
from vallum.rag.errors import DocumentError
from vallum.rag.extract.css import (
    Rule,
    TextStyle,
    element_hiding,
    parse_declarations,
    parse_stylesheet,
)
from vallum.rag.extract.unicode import unicode_tag_segments

VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
BREAKS = frozenset(
    {"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset", "figcaption"}
    | {"figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav"}
    | {"ol", "option", "p", "pre", "section", "table", "td", "th", "title", "tr", "ul"}
)
SKIPPED = frozenset({"script", "style"})  # their contents are code
HIDING_TAGS = {"noscript": Hiding.NOSCRIPT, "template": Hiding.TEMPLATE}
TEXT_ATTRIBUTES = {"alt": Hiding.ALT_TEXT, "title": Hiding.TITLE_ATTRIBUTE, "aria-label": Hiding.ARIA_LABEL}
# Start tags that close an open element of the key's kind, as HTML's implied end tags do.
_BLOCK_STARTS = BREAKS - {"br", "option", "title", "dd", "dt", "li", "td", "th", "tr"}
IMPLIED_END = {
    "p": _BLOCK_STARTS,
    "li": frozenset({"li"}),
    "option": frozenset({"option"}),
    "tr": frozenset({"tr"}),
    "td": frozenset({"td", "th", "tr"}),
    "th": frozenset({"td", "th", "tr"}),
    "dt": frozenset({"dt", "dd"}),
    "dd": frozenset({"dt", "dd"}),
}
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
_ATTRIBUTE = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
_TOKENS = re.compile(r"\s+|\S+")
MAX_CLASSES_SHOWN = 2


@dataclass(frozen=True, slots=True)
class Piece:
    """Visible text in source order: verbatim (linear) or decoded (an entity); a break has no text."""

    text: str
    start: int
    end: int
    linear: bool = True
    is_break: bool = False


@dataclass(slots=True)
class _Frame:
    tag: str
    style: TextStyle
    hidden: tuple[Hiding, str] | None  # reason and the element that hides (inherited by descendants)
    skipped: bool


@dataclass(slots=True)
class _OpenSegment:
    reason: Hiding
    element: str
    assembler: Assembler
    start: int
    end: int


@dataclass(slots=True)
class ParsedHtml:
    pieces: list[Piece] = field(default_factory=list)
    hidden: list[HiddenSegment] = field(default_factory=list)


class _Extractor(HTMLParser):
    def __init__(self, source: str, rules: list[Rule]) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self.rules = rules
        self.out = ParsedHtml()
        self._lines = _line_starts(source)
        self._stack: list[_Frame] = [_Frame("#root", TextStyle(), None, False)]
        self._segment: _OpenSegment | None = None
        self._cursor = 0  # source position up to which text has been placed

    # ---- positions ------------------------------------------------------------------------------

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._lines[line - 1] + column

    # ---- tags -----------------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, closes=tag in VOID)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, closes=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], *, closes: bool) -> None:
        at = self._offset()
        raw = self.get_starttag_text() or ""
        while len(self._stack) > 1 and tag in IMPLIED_END.get(self._stack[-1].tag, ()):
            self._stack.pop()
        parent = self._stack[-1]
        values = {name.lower(): (value or "") for name, value in reversed(attrs)}
        describe = _describe(tag, values)
        declarations = self._declarations(tag, values)
        hidden = parent.hidden
        if hidden is None:
            own = _attribute_hiding(tag, values) or element_hiding(declarations) or HIDING_TAGS.get(tag)
            if own is not None:
                hidden = (own, describe)
        style = parent.style.child(declarations)
        if tag in BREAKS:
            self._break(at)
        if not parent.skipped:
            self._attribute_text(tag, values, raw, at, hidden, describe)
        if not closes:
            self._stack.append(_Frame(tag, style, hidden, parent.skipped or tag in SKIPPED))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._stack) - 1, 0, -1):
            if self._stack[depth].tag == tag:
                del self._stack[depth:]
                break
        if tag in BREAKS:
            self._break(self._offset())

    def _declarations(self, tag: str, values: dict[str, str]) -> dict[str, str]:
        declarations: dict[str, str] = {}
        if self.rules:
            element_id = values.get("id")
            classes = frozenset(values.get("class", "").split())
            for rule in self.rules:
                if rule.selector.matches(tag, element_id, classes):
                    declarations.update(rule.declarations)
        # Presentational attributes of old HTML, then the inline style (which wins).
        if tag == "font" and "color" in values:
            declarations["color"] = values["color"].lower()
        if "bgcolor" in values:
            declarations["background-color"] = values["bgcolor"].lower()
        if "style" in values:
            declarations.update(parse_declarations(values["style"]))
        return declarations

    def _attribute_text(
        self,
        tag: str,
        values: dict[str, str],
        raw: str,
        at: int,
        hidden: tuple[Hiding, str] | None,
        describe: str,
    ) -> None:
        wanted: list[tuple[str, Hiding]] = [
            (name, why) for name, why in TEXT_ATTRIBUTES.items() if values.get(name)
        ]
        if tag == "meta" and values.get("content"):
            wanted.append(("content", Hiding.META))
        if tag == "input" and values.get("type", "").lower() == "hidden" and values.get("value"):
            wanted.append(("value", Hiding.HIDDEN_INPUT))
        if not wanted:
            return
        self._close_segment()
        spans = _attribute_spans(raw, at)
        ordered = sorted(wanted, key=lambda item: spans.get(item[0], (at, at))[0])
        for name, why in ordered:
            value = values[name]
            start, end = spans.get(name, (at, at + len(raw)))
            reason, element = (
                (hidden[0], f"{hidden[1]} {tag}[{name}]") if hidden else (why, f"{describe}[{name}]")
            )
            if tag == "meta":
                key = values.get("name") or values.get("property") or values.get("http-equiv")
                element = f"meta[{key}]" if key else "meta"
            assembler = Assembler(len(self.source))
            _append_collapsed(assembler, value, start, end, self.source[start:end] == value)
            self._emit_segment(assembler, reason, element, start, end)

    # ---- text -----------------------------------------------------------------------------------

    def handle_data(self, data: str) -> None:
        start = self._locate(data, self._offset())
        if start is not None:
            self._text(data, start, start + len(data), linear=True)

    def handle_entityref(self, name: str) -> None:
        start = self._locate("&" + name, self._offset())
        if start is None:
            return
        end = start + 1 + len(name)
        if self.source.startswith(";", end):
            end += 1
        code = name2codepoint.get(name)
        text = chr(code) if code is not None else unescape(self.source[start:end])
        self._text(text, start, end, linear=False)

    def handle_charref(self, name: str) -> None:
        start = self._locate("&#" + name, self._offset())
        if start is None:
            return
        end = start + 2 + len(name)
        if self.source.startswith(";", end):
            end += 1
        self._text(unescape(self.source[start:end]), start, end, linear=False)

    def _locate(self, text: str, guess: int) -> int | None:
        """Where `text` starts in the source: at the tokenizer's position, or (for the tail it flushes at
        close, whose position it does not update) the next place at or after the last text placed."""
        if self.source.startswith(text, guess) and guess >= self._cursor:
            found: int | None = guess
        else:
            at = self.source.find(text, self._cursor)
            found = at if at >= 0 else None
        if found is not None:
            self._cursor = found + len(text)
        return found

    def handle_comment(self, data: str) -> None:
        """Comments, and bogus comments (`<!x>`, `<?x>`): browsers show neither."""
        at = self._offset()
        start = self.source.find(data, at, at + 4 + len(data)) if data.strip() else -1
        if start >= 0:
            self._close_segment()
            assembler = Assembler(len(self.source))
            _append_collapsed(assembler, data, start, start + len(data), True)
            self._emit_segment(assembler, Hiding.COMMENT, "comment", start, start + len(data))

    def handle_pi(self, data: str) -> None:
        self.handle_comment(data)

    def parse_html_declaration(self, i: int) -> int:
        """Malformed `<![...` sections are bogus comments to a browser; the stdlib tokenizer asserts."""
        try:
            return super().parse_html_declaration(i)
        except AssertionError:
            end = self.rawdata.find(">", i + 2)
            if end < 0:
                return -1
            self.handle_comment(self.rawdata[i + 2 : end])
            return end + 1

    def _text(self, text: str, start: int, end: int, *, linear: bool) -> None:
        frame = self._stack[-1]
        if frame.skipped or not text:
            return
        hidden = frame.hidden
        if hidden is None:
            why = frame.style.hiding()
            if why is not None:
                hidden = (why, _frame_description(self._stack))
        if hidden is None:
            if text.strip():
                self._close_segment()
            self.out.pieces.append(Piece(text, start, end, linear))
            return
        if not text.strip() and self._segment is None:
            return
        segment = self._segment
        if segment is None or (segment.reason, segment.element) != hidden:
            self._close_segment()
            segment = self._segment = _OpenSegment(
                hidden[0], hidden[1], Assembler(len(self.source)), start, end
            )
        _append_collapsed(segment.assembler, text, start, end, linear)
        segment.end = end

    def _break(self, at: int) -> None:
        self.out.pieces.append(Piece("", at, at, is_break=True))
        if self._segment is not None:
            self._segment.assembler.separator(" ", at)

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            self._emit_segment(segment.assembler, segment.reason, segment.element, segment.start, segment.end)

    def _emit_segment(self, assembler: Assembler, reason: Hiding, element: str, start: int, end: int) -> None:
        text, offsets = assembler.build()
        if text:
            if offsets is not None:
                start, end = offsets.resolve(0, len(text))
            self.out.hidden.append(HiddenSegment(text, reason, start, end, offsets, element))

    def close(self) -> None:
        super().close()
        self._close_segment()


def parse_html(source: str, *, style_source: str | None = None) -> ParsedHtml:
    """Tokenize `source`; <style> rules are read from `style_source` (default: the source itself)."""
    rules = [
        rule for block in _STYLE_BLOCK.findall(style_source or source) for rule in parse_stylesheet(block)
    ]
    parser = _Extractor(source, rules)
    try:
        parser.feed(source)
        parser.close()
    except AssertionError as exc:  # the stdlib tokenizer's way of giving up on some malformed markup
        line, column = parser.getpos()
        raise DocumentError(
            f"the HTML cannot be tokenised at line {line}, column {column + 1}: {exc}"
        ) from None
    return parser.out


def extract_html(source: str, name: str = "<html>") -> ExtractedDocument:
    parsed = parse_html(source)
    assembler = Assembler(len(source))
    for piece in parsed.pieces:
        if piece.is_break:
            assembler.separator("\n", piece.start)
        else:
            _append_collapsed(assembler, piece.text, piece.start, piece.end, piece.linear)
    visible, offsets = assembler.build()
    hidden = parsed.hidden + unicode_tag_segments(visible, offsets, len(source))
    hidden.sort(key=lambda segment: segment.start)
    return ExtractedDocument(name, Format.HTML, source, visible, offsets, tuple(hidden))


def _append_collapsed(assembler: Assembler, text: str, start: int, end: int, linear: bool) -> None:
    """Append text with each whitespace run shown as one space, as a browser renders it."""
    if not linear:
        if text[:1].isspace():
            assembler.separator(" ", start)
        collapsed = " ".join(text.split())
        assembler.block(collapsed, start, end)
        if collapsed and text[-1:].isspace():
            assembler.separator(" ", end)
        return
    for token in _TOKENS.finditer(text):
        piece = token.group()
        if piece[0].isspace():
            assembler.separator(" ", start + token.start())
        else:
            assembler.linear(piece, start + token.start())


def _attribute_hiding(tag: str, values: dict[str, str]) -> Hiding | None:
    if "hidden" in values:
        return Hiding.HIDDEN_ATTRIBUTE
    if values.get("aria-hidden", "").lower() == "true":
        return Hiding.ARIA_HIDDEN
    return None


def _describe(tag: str, values: dict[str, str]) -> str:
    out = tag
    if values.get("id"):
        out += f"#{values['id']}"
    for cls in values.get("class", "").split()[:MAX_CLASSES_SHOWN]:
        out += f".{cls}"
    return out


def _frame_description(stack: list[_Frame]) -> str:
    return stack[-1].tag if len(stack) > 1 else "document"


def _attribute_spans(raw: str, at: int) -> dict[str, tuple[int, int]]:
    """Source range of each attribute value in a start tag that begins at `at`."""
    spans: dict[str, tuple[int, int]] = {}
    name_end = re.match(r"<[^\s/>]*", raw)
    for found in _ATTRIBUTE.finditer(raw, name_end.end() if name_end else 0):
        name = found.group(1).lower()
        if name in spans:
            continue
        for group in (2, 3, 4):
            if found.group(group) is not None:
                spans[name] = (at + found.start(group), at + found.end(group))
                break
    return spans


def _line_starts(text: str) -> list[int]:
    starts = [0]
    i = text.find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    return starts
