"""PDF via pypdf: the text a reader sees, and text the page draws where no reader can see it.

Each page's content stream is walked with a small graphics-state interpreter (q/Q, cm, colours and colour
spaces, ExtGState fill alpha, text render mode, font size, text and line matrices, filled rectangles).
Every text-showing operator is judged: invisible render mode (3 or 7), fill alpha 0, white (or
background-coloured) fill where the page painted no darker box beneath, rendered size under one point,
or an origin outside the crop box. The page is then extracted by pypdf once as is (what a naive indexer
reads), once with the hidden operators blanked (the visible text), and once per kind of hiding with
only that kind kept, so pypdf's own font decoding gives the words. Annotation contents and the document
information dictionary are reported as hidden text too.

Not judged (said in the document's notes where they occur): text inside form XObjects (it counts as
visible), clipping paths, text covered by images or later drawing, and glyph advance (only where a
text run starts is tested against the page box).
"""

from __future__ import annotations

import io
import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher
from typing import Any

from vallum.rag.document import Assembler, ExtractedDocument, Format, HiddenSegment, Hiding
from vallum.rag.errors import DocumentError
from vallum.rag.extract.css import MIN_CONTRAST, WHITE, Colour, contrast

MAX_PAGES = 2000
TINY_POINTS = 1.0  # rendered font size below this is unreadable
OFF_PAGE_LEFT = 500.0  # a run starting this far left of the page could not reach it with ordinary text
ALIGN_LIMIT = 50_000
MAX_NOTES = 8  # pages longer than this are mapped as a whole instead of character by character
TEXT_SHOWING = frozenset({b"Tj", b"TJ", b"'", b'"'})
IDENTITY = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
Matrix = tuple[float, float, float, float, float, float]
INFO_KEYS = ("/Title", "/Subject", "/Keywords", "/Author")  # /Creator and /Producer name tools

log = logging.getLogger(__name__)


def _multiply(m: Matrix, n: Matrix) -> Matrix:
    a, b, c, d, e, f = m
    p, q, r, s, t, u = n
    return (a * p + b * r, a * q + b * s, c * p + d * r, c * q + d * s, e * p + f * r + t, e * q + f * s + u)


@dataclass(slots=True)
class _State:
    ctm: Matrix = IDENTITY
    fill: Colour | None = (0.0, 0.0, 0.0, 1.0)
    fill_components: int = 1
    alpha: float = 1.0
    render_mode: int = 0
    font_size: float = 0.0
    scaling: float = 1.0
    leading: float = 0.0
    rise: float = 0.0


@dataclass(slots=True)
class _Walker:
    """Judges each text-showing operator of one content stream."""

    box: tuple[float, float, float, float]
    ext_states: dict[str, float]
    forms: frozenset[str]  # names of the page's form XObjects (images are not text)
    state: _State = field(default_factory=_State)
    stack: list[_State] = field(default_factory=list)
    tm: Matrix = IDENTITY
    tlm: Matrix = IDENTITY
    path: list[tuple[float, float, float, float]] = field(default_factory=list)
    painted: list[tuple[tuple[float, float, float, float], Colour]] = field(default_factory=list)
    uses_forms: bool = False

    def judge(self, operations: list[tuple[Any, bytes]]) -> Iterator[tuple[int, Hiding | None]]:
        for index, (operands, operator) in enumerate(operations):
            try:
                verdict = self._step(operator, operands)
            except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, OverflowError):
                verdict = None  # a malformed operator changes nothing we track
            if operator in TEXT_SHOWING:
                yield index, verdict

    def _step(self, operator: bytes, operands: list[Any]) -> Hiding | None:
        state = self.state
        if operator == b"q":
            self.stack.append(replace(state))
        elif operator == b"Q":
            self.state = self.stack.pop() if self.stack else _State()
        elif operator == b"cm":
            state.ctm = _multiply(_matrix(operands), state.ctm)
        elif operator in (b"g", b"rg", b"k", b"sc", b"scn"):
            state.fill = _colour(operands, None if operator in (b"sc", b"scn") else operator)
        elif operator == b"cs":
            name = str(operands[0]) if operands else ""
            state.fill_components = {"/DeviceRGB": 3, "/CalRGB": 3, "/DeviceCMYK": 4}.get(name, 1)
            state.fill = (0.0, 0.0, 0.0, 1.0)
        elif operator == b"gs" and operands:
            state.alpha = self.ext_states.get(str(operands[0]), state.alpha)
        elif operator == b"re" and len(operands) >= 4:
            x, y, w, h = (float(v) for v in operands[:4])
            self.path.append(self._rect(x, y, w, h))
        elif operator in (b"f", b"F", b"f*", b"B", b"B*", b"b", b"b*"):
            if state.fill is not None:
                self.painted.extend((rect, state.fill) for rect in self.path)
            self.path = []
        elif operator in (b"n", b"S", b"s"):
            self.path = []
        elif operator == b"BT":
            self.tm = self.tlm = IDENTITY
        elif operator == b"Tf" and len(operands) >= 2:
            state.font_size = float(operands[1])
        elif operator == b"Tr" and operands:
            state.render_mode = int(operands[0])
        elif operator == b"Tz" and operands:
            state.scaling = float(operands[0]) / 100
        elif operator == b"TL" and operands:
            state.leading = float(operands[0])
        elif operator == b"Ts" and operands:
            state.rise = float(operands[0])
        elif operator in (b"Td", b"TD") and len(operands) >= 2:
            tx, ty = float(operands[0]), float(operands[1])
            if operator == b"TD":
                state.leading = -ty
            self.tm = self.tlm = _multiply((1, 0, 0, 1, tx, ty), self.tlm)
        elif operator == b"Tm" and len(operands) >= 6:
            self.tm = self.tlm = _matrix(operands)
        elif operator in (b"T*", b"'", b'"'):
            self.tm = self.tlm = _multiply((1, 0, 0, 1, 0, -state.leading), self.tlm)
        elif operator == b"Do" and operands and str(operands[0]) in self.forms:
            self.uses_forms = True
        if operator in TEXT_SHOWING:
            return self._hiding()
        return None

    def _rect(self, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        corners = [
            _apply(self.state.ctm, px, py) for px, py in ((x, y), (x + w, y), (x, y + h), (x + w, y + h))
        ]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        return min(xs), min(ys), max(xs), max(ys)

    def _hiding(self) -> Hiding | None:
        state = self.state
        if state.render_mode in (3, 7):
            return Hiding.INVISIBLE_RENDER_MODE
        if state.alpha <= 0.05 or (state.fill is not None and state.fill[3] <= 0.05):
            return Hiding.ZERO_OPACITY
        rendering = _multiply(self.tm, state.ctm)
        x, y = _apply(rendering, 0.0, state.rise)
        size = abs(state.font_size) * math.hypot(rendering[2], rendering[3])
        width = abs(state.font_size) * state.scaling * math.hypot(rendering[0], rendering[1])
        if size < TINY_POINTS or width < TINY_POINTS:
            return Hiding.TINY_TEXT
        left, bottom, right, top = self.box
        if x >= right or x < left - OFF_PAGE_LEFT or y < bottom - size or y > top + size:
            return Hiding.OFF_PAGE
        if state.fill is not None:
            background, painted = WHITE, False
            for (x0, y0, x1, y1), colour in reversed(self.painted):
                if x0 <= x <= x1 and y0 <= y <= y1:
                    background, painted = colour, True
                    break
            if contrast(state.fill, background) < MIN_CONTRAST:
                return Hiding.SAME_COLOUR if painted else Hiding.WHITE_TEXT
        return None


def _matrix(operands: list[Any]) -> Matrix:
    a, b, c, d, e, f = (float(v) for v in operands[:6])
    return (a, b, c, d, e, f)


def _apply(m: Matrix, x: float, y: float) -> tuple[float, float]:
    return x * m[0] + y * m[2] + m[4], x * m[1] + y * m[3] + m[5]


def _colour(operands: list[Any], operator: bytes | None) -> Colour | None:
    numbers = [float(v) for v in operands if isinstance(v, int | float)]
    if operator == b"g" or (operator is None and len(numbers) == 1):
        gray = numbers[0] * 255
        return (gray, gray, gray, 1.0)
    if operator == b"rg" or (operator is None and len(numbers) == 3):
        r, g, b = numbers[:3]
        return (r * 255, g * 255, b * 255, 1.0)
    if operator == b"k" or (operator is None and len(numbers) == 4):
        c, m, y, k = numbers[:4]
        return ((1 - c) * (1 - k) * 255, (1 - m) * (1 - k) * 255, (1 - y) * (1 - k) * 255, 1.0)
    return None  # patterns and other colour spaces: unknown


def extract_pdf(data: bytes, name: str = "<pdf>", *, max_pages: int = MAX_PAGES) -> ExtractedDocument:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:  # pragma: no cover - the rag extra installs it
        raise DocumentError("reading PDFs needs pypdf: pip install 'vallum[rag]'") from exc
    if not data.lstrip()[:5].startswith(b"%PDF-"):
        raise DocumentError("not a PDF (no %PDF- header)")
    extraction = _Extraction(name)
    with _warnings_as_notes(extraction.notes):
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                raise DocumentError("the PDF is encrypted with a password; decrypt it before scanning")
            pages = list(reader.pages)
        except DocumentError:
            raise
        except (
            PyPdfError,
            ValueError,
            TypeError,
            KeyError,
            IndexError,
            AttributeError,
            RecursionError,
        ) as exc:
            detail = f" ({'; '.join(extraction.notes[:2])})" if extraction.notes else ""
            raise DocumentError(f"cannot read PDF: {type(exc).__name__}: {exc}{detail}") from None
        if len(pages) > max_pages:
            raise DocumentError(f"the PDF has {len(pages)} pages; the limit is {max_pages}")
        return extraction.run(reader, pages)


@contextmanager
def _warnings_as_notes(notes: list[str]) -> Iterator[None]:
    """pypdf's warnings about this document (damaged objects, undecodable forms) become its notes,
    instead of lines on stderr that nobody can attribute to a file."""
    thread = threading.get_ident()
    seen: set[str] = set()

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message not in seen and len(seen) < MAX_NOTES:
                seen.add(message)
                notes.append(f"pypdf: {message}"[:300])

    handler = _Collect(logging.WARNING)
    handler.addFilter(lambda record: record.thread == thread)
    logger = logging.getLogger("pypdf")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@dataclass(slots=True)
class _PageText:
    full: str
    visible: str
    hidden: list[tuple[Hiding, str]]
    annotations: list[str]


class _Extraction:
    def __init__(self, name: str) -> None:
        self.name = name
        self.notes: list[str] = []

    def run(self, reader: Any, pages: list[Any]) -> ExtractedDocument:
        info = _info(reader)
        texts = [self._page(number, page) for number, page in enumerate(pages, start=1)]
        header = "".join(f"{key[1:]}: {value}\n" for key, value in info)
        parts = [header + "\f\n"] if header else []
        page_starts: list[int] = []
        offset = len(parts[0]) if parts else 0
        for text in texts:
            page_starts.append(offset)
            parts.append(text.full + "\n\f\n")
            offset += len(text.full) + 3
        source = "".join(parts)
        hidden: list[HiddenSegment] = []
        line_start = 0
        for key, value in info:
            start = source.index(value, line_start)
            hidden.append(
                HiddenSegment(
                    value, Hiding.META, start, start + len(value), None, f"document information {key}"
                )
            )
            line_start = start + len(value)
        assembler = Assembler(len(source))
        for number, (text, start) in enumerate(zip(texts, page_starts, strict=True), start=1):
            _align(assembler, text.full, text.visible, start)
            assembler.separator("\n\f\n", start + len(text.full))
            for reason, chunk in text.hidden:
                hidden.append(_locate_hidden(chunk, reason, text.full, start, len(source), f"page {number}"))
            for contents in text.annotations:
                hidden.append(
                    _detached(contents, Hiding.ANNOTATION, start, len(source), f"page {number} annotation")
                )
        visible, offsets = assembler.build()
        hidden.sort(key=lambda segment: segment.start)
        return ExtractedDocument(
            self.name,
            Format.PDF,
            source,
            visible,
            offsets,
            tuple(hidden),
            tuple(page_starts),
            tuple(self.notes),
        )

    def _page(self, number: int, page: Any) -> _PageText:
        from pypdf.generic import ArrayObject, ContentStream, NameObject, TextStringObject

        full = _extract(page)
        annotations = _annotations(page)
        try:
            contents = page.get_contents()
            operations: list[tuple[Any, bytes]] = list(contents.operations) if contents is not None else []
        except Exception as exc:  # pypdf raises many kinds on damaged streams; the page text stands
            self.notes.append(f"page {number}: content stream not analysed for hidden text ({exc})")
            return _PageText(full, full, [], annotations)
        walker = _Walker(_box(page), _ext_states(page), _forms(page))
        verdicts = dict(walker.judge(operations))
        if walker.uses_forms:
            self.notes.append(f"page {number}: text inside form XObjects is not judged for hiding")
        reasons = sorted({why for why in verdicts.values() if why is not None})
        if not reasons:
            return _PageText(full, full, [], annotations)

        def keep_only(wanted: Hiding | None) -> str:
            kept: list[tuple[Any, bytes]] = []
            for index, (operands, operator) in enumerate(operations):
                if index in verdicts and verdicts[index] != wanted:
                    operands = _blanked(operands, operator, ArrayObject(), TextStringObject(""))
                kept.append((operands, operator))
            stream = ContentStream(None, page.pdf)
            stream.operations = kept
            copy = type(page)(pdf=page.pdf)
            copy.update(page)
            copy[NameObject("/Contents")] = stream
            return _extract(copy)

        visible = keep_only(None)
        hidden = [(why, text) for why in reasons if (text := keep_only(why).strip())]
        return _PageText(full, visible, hidden, annotations)


def _extract(page: Any) -> str:
    try:
        return str(page.extract_text())
    except Exception as exc:  # a damaged page must not end the document
        log.debug("pypdf could not extract a page: %s", exc)
        return ""


def _blanked(operands: list[Any], operator: bytes, empty_array: Any, empty_string: Any) -> list[Any]:
    """The operands of a text-showing operator with nothing to show (positioning is kept)."""
    if operator == b"TJ":
        return [empty_array]
    if operator == b'"':
        return [*operands[:2], empty_string]
    return [empty_string]


def _box(page: Any) -> tuple[float, float, float, float]:
    try:
        box = page.cropbox
        return float(box.left), float(box.bottom), float(box.right), float(box.top)
    except Exception:
        return (0.0, 0.0, 612.0, 792.0)


def _ext_states(page: Any) -> dict[str, float]:
    alphas: dict[str, float] = {}
    try:
        states = page["/Resources"].get_object().get("/ExtGState")
        if states is None:
            return alphas
        for key, value in states.get_object().items():
            state = value.get_object()
            if "/ca" in state:
                alphas[str(key)] = float(state["/ca"])
    except Exception:
        pass
    return alphas


def _forms(page: Any) -> frozenset[str]:
    names: set[str] = set()
    try:
        objects = page["/Resources"].get_object().get("/XObject")
        for key, value in objects.get_object().items() if objects is not None else ():
            if value.get_object().get("/Subtype") == "/Form":
                names.add(str(key))
    except Exception:
        pass
    return frozenset(names)


def _annotations(page: Any) -> list[str]:
    found: list[str] = []
    try:
        annotations = page.get("/Annots")
        for reference in annotations.get_object() if annotations is not None else []:
            annotation = reference.get_object()
            for key in ("/Contents", "/TU", "/RC"):
                value = annotation.get(key)
                if value is not None and str(value).strip():
                    found.append(str(value).strip())
    except Exception:
        pass
    return found


def _info(reader: Any) -> list[tuple[str, str]]:
    try:
        metadata = reader.metadata
    except Exception:
        return []
    if not metadata:
        return []
    out: list[tuple[str, str]] = []
    for key in INFO_KEYS:
        try:
            value = metadata.get(key)
        except Exception:
            continue
        text = " ".join(str(value).split()) if value is not None else ""
        if text:
            out.append((key, text))
    return out


def _align(assembler: Assembler, full: str, visible: str, start: int) -> None:
    """Map the visible text of a page onto the page's full text (they differ by the hidden runs)."""
    if visible == full:
        assembler.linear(visible, start)
        return
    if len(full) > ALIGN_LIMIT or len(visible) > ALIGN_LIMIT:
        assembler.block(visible, start, start + len(full))
        return
    done_full = done_visible = 0
    for a, b, size in SequenceMatcher(None, full, visible, autojunk=False).get_matching_blocks():
        if b > done_visible:
            assembler.block(visible[done_visible:b], start + done_full, start + max(a, done_full))
        if size:
            assembler.linear(visible[b : b + size], start + a)
        done_full, done_visible = a + size, b + size


def _locate_hidden(
    text: str, reason: Hiding, full: str, start: int, source_len: int, element: str
) -> HiddenSegment:
    found = full.find(text)
    if found >= 0:
        return HiddenSegment(text, reason, start + found, start + found + len(text), None, element)
    probe = text[:40]
    found = full.find(probe) if probe else -1
    if found >= 0:
        assembler = Assembler(source_len)
        assembler.block(text, start + found, start + min(len(full), found + len(text)))
        mapped, offsets = assembler.build()
        return HiddenSegment(mapped, reason, start + found, start + found + len(text), offsets, element, True)
    return _detached(text, reason, start, source_len, element)


def _detached(text: str, reason: Hiding, at: int, source_len: int, element: str) -> HiddenSegment:
    """Hidden text with no place in the page text: located at the page's start, approximately."""
    assembler = Assembler(source_len)
    assembler.block(text, at, at)
    mapped, offsets = assembler.build()
    return HiddenSegment(mapped, reason, at, at, offsets, element, True)
