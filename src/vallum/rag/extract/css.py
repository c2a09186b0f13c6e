"""Just enough CSS to tell whether text is hidden: declarations, simple selectors, colours, lengths.

Not a CSS engine: inline styles and rules with simple selectors (`tag`, `.class`, `#id`, `tag.class`,
comma lists) in <style> blocks are applied; rules with combinators, attribute selectors or pseudo-classes
are ignored (they cannot be matched without layout or interaction), and so are external stylesheets.
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass

from vallum.rag.document import Hiding

Colour = tuple[float, float, float, float]  # r, g, b in 0..255, alpha in 0..1

# Text whose contrast ratio with its background is below this is invisible in practice (WCAG asks 4.5).
MIN_CONTRAST = 1.25
OFF_SCREEN_PX = -500.0  # left/top/text-indent at or beyond this moves text out of any viewport
TINY_PX = 1.0  # font sizes at or below this are unreadable
WHITE: Colour = (255.0, 255.0, 255.0, 1.0)

_NAMED: dict[str, Colour] = {
    "white": WHITE,
    "black": (0, 0, 0, 1.0),
    "red": (255, 0, 0, 1.0),
    "green": (0, 128, 0, 1.0),
    "blue": (0, 0, 255, 1.0),
    "yellow": (255, 255, 0, 1.0),
    "gray": (128, 128, 128, 1.0),
    "grey": (128, 128, 128, 1.0),
    "silver": (192, 192, 192, 1.0),
    "navy": (0, 0, 128, 1.0),
    "whitesmoke": (245, 245, 245, 1.0),
    "snow": (255, 250, 250, 1.0),
    "ivory": (255, 255, 240, 1.0),
    "ghostwhite": (248, 248, 255, 1.0),
    "floralwhite": (255, 250, 240, 1.0),
    "azure": (240, 255, 255, 1.0),
    "mintcream": (245, 255, 250, 1.0),
    "seashell": (255, 245, 238, 1.0),
    "linen": (250, 240, 230, 1.0),
    "aliceblue": (240, 248, 255, 1.0),
    "lightgray": (211, 211, 211, 1.0),
    "lightgrey": (211, 211, 211, 1.0),
    "gainsboro": (220, 220, 220, 1.0),
    "transparent": (0, 0, 0, 0.0),
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_LENGTH = re.compile(rf"^\s*({_NUMBER})\s*([a-z%]*)")
_FUNCTION = re.compile(r"^(rgba?|hsla?)\(([^)]*)\)$")
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_RULE = re.compile(r"([^{}@]+)\{([^{}]*)\}")
_SIMPLE_SELECTOR = re.compile(r"^([a-z][a-z0-9-]*|\*)?((?:[.#][_a-z0-9-]+)*)$", re.IGNORECASE)
_UNIT_PX = {"px": 1.0, "": 1.0, "pt": 4 / 3, "pc": 16.0, "em": 16.0, "rem": 16.0, "ex": 8.0, "ch": 8.0}
_UNIT_PX.update({"in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4, "q": 96 / 101.6})


def parse_declarations(style: str) -> dict[str, str]:
    """`a: b; c: d` -> {"a": "b", "c": "d"}, names and values lower-cased, `!important` dropped."""
    out: dict[str, str] = {}
    for part in _COMMENT.sub("", style).split(";"):
        name, sep, value = part.partition(":")
        if sep:
            value = value.strip().lower().replace("!important", "").strip()
            out[name.strip().lower()] = value
    return out


@dataclass(frozen=True, slots=True)
class Selector:
    tag: str | None
    element_id: str | None
    classes: frozenset[str]

    def matches(self, tag: str, element_id: str | None, classes: frozenset[str]) -> bool:
        return (
            (self.tag is None or self.tag == tag)
            and (self.element_id is None or self.element_id == element_id)
            and self.classes <= classes
        )


@dataclass(frozen=True, slots=True)
class Rule:
    selector: Selector
    declarations: dict[str, str]


def parse_stylesheet(css: str) -> list[Rule]:
    """The rules of a <style> block whose selectors can be matched without layout (see module doc)."""
    rules: list[Rule] = []
    for match in _RULE.finditer(_COMMENT.sub("", css)):
        declarations = parse_declarations(match.group(2))
        if not declarations:
            continue
        for text in match.group(1).split(","):
            selector = _selector(text.strip())
            if selector is not None:
                rules.append(Rule(selector, declarations))
    return rules


def _selector(text: str) -> Selector | None:
    found = _SIMPLE_SELECTOR.match(text)
    if found is None or not text:
        return None
    tag = found.group(1)
    parts = re.findall(r"[.#][_a-zA-Z0-9-]+", found.group(2))
    ids = [p[1:] for p in parts if p[0] == "#"]
    if len(ids) > 1:
        return None
    classes = frozenset(p[1:] for p in parts if p[0] == ".")
    return Selector(None if tag in (None, "*") else tag.lower(), ids[0] if ids else None, classes)


def parse_colour(value: str) -> Colour | None:
    value = value.strip().lower()
    if not value:
        return None
    if value in _NAMED:
        return _NAMED[value]
    if value.startswith("#"):
        return _hex(value[1:])
    found = _FUNCTION.match(value)
    if found is None:
        return None
    parts = [p for p in re.split(r"[\s,/]+", found.group(2).strip()) if p]
    if len(parts) not in (3, 4):
        return None
    try:
        alpha = _fraction(parts[3]) if len(parts) == 4 else 1.0
        if found.group(1).startswith("rgb"):
            r, g, b = (_channel(p) for p in parts[:3])
            return (r, g, b, alpha)
        hue = float(parts[0].removesuffix("deg")) / 360.0 % 1.0
        rr, gg, bb = colorsys.hls_to_rgb(hue, _fraction(parts[2]), _fraction(parts[1]))
        return (rr * 255, gg * 255, bb * 255, alpha)
    except ValueError:
        return None


def _hex(digits: str) -> Colour | None:
    if not re.fullmatch(r"[0-9a-f]{3,8}", digits) or len(digits) in (5, 7):
        return None
    if len(digits) in (3, 4):
        digits = "".join(c * 2 for c in digits)
    r, g, b = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
    alpha = int(digits[6:8], 16) / 255 if len(digits) == 8 else 1.0
    return (float(r), float(g), float(b), alpha)


def _channel(text: str) -> float:
    if text.endswith("%"):
        return max(0.0, min(255.0, float(text[:-1]) * 2.55))
    return max(0.0, min(255.0, float(text)))


def _fraction(text: str) -> float:
    if text.endswith("%"):
        return max(0.0, min(1.0, float(text[:-1]) / 100))
    return max(0.0, min(1.0, float(text)))


def _luminance(colour: Colour) -> float:
    def linear(c: float) -> float:
        c /= 255.0
        return c / 12.92 if c <= 0.03928 else float(((c + 0.055) / 1.055) ** 2.4)

    r, g, b, _ = colour
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def contrast(a: Colour, b: Colour) -> float:
    """WCAG contrast ratio of two opaque colours, 1.0 (identical) to 21.0 (black on white)."""
    la, lb = _luminance(a), _luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def length_px(value: str) -> float | None:
    """A CSS length in pixels (em counted as 16px); percentages and viewport units as given; None if unknown."""
    found = _LENGTH.match(value)
    if found is None:
        return None
    number, unit = float(found.group(1)), found.group(2)
    if unit in ("%", "vw", "vh", "vmin", "vmax"):
        return number
    factor = _UNIT_PX.get(unit)
    return None if factor is None else number * factor


@dataclass(frozen=True, slots=True)
class TextStyle:
    """The inherited properties that decide whether text can be read."""

    colour: Colour | None = None
    background: Colour | None = None  # nearest opaque background declared by the element or an ancestor
    font_px: float | None = None
    invisible: bool = False  # visibility: hidden (inherited, a descendant may override)

    def child(self, declarations: dict[str, str]) -> TextStyle:
        colour, background, font_px, invisible = self.colour, self.background, self.font_px, self.invisible
        if "color" in declarations:
            colour = parse_colour(declarations["color"]) or colour
        for name in ("background-color", "background"):
            if name in declarations:
                declared = parse_colour(declarations[name].split()[0]) if declarations[name] else None
                if declared is not None and declared[3] > 0.5:
                    background = declared
        if "font-size" in declarations:
            font_px = _font_px(declarations["font-size"], font_px)
        if "visibility" in declarations:
            invisible = declarations["visibility"] in ("hidden", "collapse")
        return TextStyle(colour, background, font_px, invisible)

    def hiding(self) -> Hiding | None:
        """Why text in this style cannot be read, if it cannot (inherited properties only)."""
        if self.invisible:
            return Hiding.VISIBILITY_HIDDEN
        if self.font_px is not None:
            if self.font_px <= 0:
                return Hiding.ZERO_FONT_SIZE
            if self.font_px <= TINY_PX:
                return Hiding.TINY_TEXT
        if self.colour is None:
            return None
        if self.colour[3] <= 0.05:
            return Hiding.ZERO_OPACITY
        if self.background is not None:
            return Hiding.SAME_COLOUR if contrast(self.colour, self.background) < MIN_CONTRAST else None
        return Hiding.WHITE_TEXT if contrast(self.colour, WHITE) < MIN_CONTRAST else None


def _font_px(value: str, parent_px: float | None) -> float | None:
    """The font size in pixels; relative sizes scale the parent's (16px when unknown)."""
    found = _LENGTH.match(value)
    if found is None:
        return parent_px
    number, unit = float(found.group(1)), found.group(2)
    if number <= 0:
        return 0.0
    base = parent_px if parent_px is not None else 16.0
    if unit == "%":
        return base * number / 100
    if unit == "em":
        return base * number
    factor = _UNIT_PX.get(unit)
    return number * factor if factor is not None else None


def element_hiding(declarations: dict[str, str]) -> Hiding | None:
    """Why an element hides itself and everything inside it (properties that descendants cannot undo)."""
    if declarations.get("display", "").startswith("none"):
        return Hiding.DISPLAY_NONE
    opacity = declarations.get("opacity")
    if opacity is not None:
        try:
            if _fraction(opacity.strip()) <= 0.05:
                return Hiding.ZERO_OPACITY
        except ValueError:
            pass
    if _off_screen(declarations):
        return Hiding.OFF_SCREEN
    if _clipped(declarations):
        return Hiding.CLIPPED
    return None


def _off_screen(declarations: dict[str, str]) -> bool:
    positioned = declarations.get("position", "") in ("absolute", "fixed", "relative")
    names = ("left", "top", "right", "bottom") if positioned else ()
    for name in (*names, "text-indent", "margin-left", "margin-top"):
        value = declarations.get(name)
        if value is None:
            continue
        px = length_px(value)
        if px is None:
            continue
        far = -100.0 if value.strip().endswith(("%", "vw", "vh")) else OFF_SCREEN_PX
        if px <= far:
            return True
    transform = declarations.get("transform", "")
    found = re.search(rf"translate[xy]?\(\s*({_NUMBER})(px|em|%)?", transform)
    if found is not None:
        return float(found.group(1)) * (16 if found.group(2) == "em" else 1) <= OFF_SCREEN_PX
    return "scale(0)" in transform.replace(" ", "")


def _clipped(declarations: dict[str, str]) -> bool:
    clip = declarations.get("clip", "").replace(" ", "").replace(",", "")
    if clip.startswith("rect(") and set(re.sub(r"px|rect|[()]", "", clip)) <= {"0"}:
        return True
    clip_path = declarations.get("clip-path", "").replace(" ", "")
    if clip_path in ("inset(50%)", "inset(100%)", "circle(0)", "circle(0px)", "polygon(000000)"):
        return True
    if declarations.get("overflow", "") in ("hidden", "clip"):
        for name in ("width", "height", "max-width", "max-height"):
            px = length_px(declarations.get(name, "") or "")
            if px is not None and px <= TINY_PX:
                return True
    return False
