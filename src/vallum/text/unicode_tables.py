"""Unicode data used by normalisation: code points to remove, and look-alikes of Latin letters.

Everything here is data. The sources are Unicode's confusables.txt (the entries that matter for Latin
text), the Default_Ignorable_Code_Point property, and the usual obfuscation tricks seen in prompt attacks
("ASCII smuggling" with tag characters, Trojan-Source bidi controls, zero-width splitting of keywords).
"""

from __future__ import annotations

# ---- code points removed from every view ---------------------------------------------------------------
# (first, last) inclusive ranges, one kind per table; the kind becomes the Signal kind.

TAG_RANGE = (0xE0000, 0xE007F)  # tag characters: invisible copies of ASCII 0x00..0x7F

BIDI_RANGES = (
    (0x061C, 0x061C),  # ARABIC LETTER MARK
    (0x200E, 0x200F),  # LRM, RLM
    (0x202A, 0x202E),  # LRE, RLE, PDF, LRO, RLO
    (0x2066, 0x2069),  # LRI, RLI, FSI, PDI
)

INVISIBLE_RANGES = (
    (0x00AD, 0x00AD),  # SOFT HYPHEN
    (0x034F, 0x034F),  # COMBINING GRAPHEME JOINER
    (0x115F, 0x1160),  # HANGUL CHOSEONG / JUNGSEONG FILLER
    (0x17B4, 0x17B5),  # KHMER VOWEL INHERENT AQ / AA
    (0x180B, 0x180F),  # MONGOLIAN FREE VARIATION SELECTORS, VOWEL SEPARATOR
    (0x200B, 0x200D),  # ZERO WIDTH SPACE, NON-JOINER, JOINER
    (0x2060, 0x2065),  # WORD JOINER, invisible operators
    (0x206A, 0x206F),  # deprecated format characters
    (0x3164, 0x3164),  # HANGUL FILLER
    (0xFE00, 0xFE0F),  # VARIATION SELECTORS 1-16
    (0xFEFF, 0xFEFF),  # ZERO WIDTH NO-BREAK SPACE (BOM)
    (0xFFA0, 0xFFA0),  # HALFWIDTH HANGUL FILLER
    (0xFFF9, 0xFFFB),  # interlinear annotation controls
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0100, 0xE01EF),  # VARIATION SELECTORS 17-256
)

CONTROL_RANGES = (
    (0x00, 0x08),
    (0x0E, 0x1F),  # includes the information separators that str.isspace() accepts
    (0x7F, 0x9F),  # DEL and the C1 controls
)

# Combining diacritics stacked on letters ("Zalgo" text) or used to split a keyword; removed.
COMBINING_RANGES = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
)

# Emoji sequences use these legitimately (ZWJ families, VS16 emoji presentation).
EMOJI_JOINERS = frozenset("\u200d\ufe0e\ufe0f")

# ---- look-alikes folded unconditionally (styled Latin that NFKC does not fold) -------------------------


def _alphabet_block(first: int, count: int = 26) -> dict[str, str]:
    return {chr(first + i): chr(ord("a") + i) for i in range(count)}


# fmt: off
STYLED_LETTERS: dict[str, str] = {
    # Latin letter small capitals
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j",
    "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u",
    "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
    # IPA and other Latin forms that read as plain letters
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ǀ": "l", "ɾ": "r", "ʋ": "u",
    **_alphabet_block(0x1F150),  # NEGATIVE CIRCLED LATIN CAPITAL LETTER A..Z
    **_alphabet_block(0x1F170),  # NEGATIVE SQUARED LATIN CAPITAL LETTER A..Z
    **_alphabet_block(0x1F1E6),  # REGIONAL INDICATOR SYMBOL LETTER A..Z
}
# fmt: on

# Letters of living orthographies that fold to ASCII for matching but are no sign of obfuscation
# (Turkish and Azerbaijani dotless i).
NATIVE_LETTERS = frozenset({"ı"})

# Blocks whose letters are stylistic variants of Latin (NFKC folds most of them); a letter folded from
# one of these is reported as a "homoglyph" signal.
STYLED_RANGES = (
    (0x0250, 0x02AF),  # IPA extensions
    (0x1D00, 0x1D7F),  # phonetic extensions (small capitals, modifier letters)
    (0x2070, 0x209F),  # superscripts and subscripts
    (0x2100, 0x214F),  # letterlike symbols
    (0x2460, 0x24FF),  # enclosed alphanumerics
    (0xA730, 0xA731),  # small capital F, S
    (0x1D400, 0x1D7FF),  # mathematical alphanumeric symbols
    (0x1F100, 0x1F1FF),  # enclosed alphanumeric supplement
)

FULLWIDTH_RANGE = (0xFF01, 0xFF5E)  # full-width ASCII variants

# ---- look-alikes from other scripts, folded only where they pose as Latin --------------------------------
# Keys keep their case: Greek capital NU looks like N, its lower case like v.

# fmt: off
CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "А": "a", "а": "a", "В": "b", "в": "b", "Ь": "b", "ь": "b", "С": "c", "с": "c", "Ԁ": "d", "ԁ": "d",
    "Е": "e", "е": "e", "Һ": "h", "һ": "h", "Н": "h", "н": "h", "І": "i", "і": "i", "Ј": "j", "ј": "j",
    "К": "k", "к": "k", "Ӏ": "l", "ӏ": "l", "М": "m", "м": "m", "п": "n", "О": "o", "о": "o", "Р": "p",
    "р": "p", "Ԛ": "q", "ԛ": "q", "г": "r", "Ѕ": "s", "ѕ": "s", "Т": "t", "т": "t", "Ԝ": "w", "ԝ": "w",
    "Х": "x", "х": "x", "У": "y", "у": "y", "Ү": "y", "ү": "y",
    # Greek
    "Α": "a", "α": "a", "Β": "b", "β": "b", "Ϲ": "c", "ϲ": "c", "Ε": "e", "ε": "e", "Η": "h", "η": "n",
    "Ι": "i", "ι": "i", "ϳ": "j", "Κ": "k", "κ": "k", "Μ": "m", "Ν": "n", "ν": "v", "Ο": "o", "ο": "o",
    "Ρ": "p", "ρ": "p", "Τ": "t", "τ": "t", "Υ": "y", "υ": "u", "γ": "y", "ω": "w", "Χ": "x", "χ": "x",
    "Ζ": "z",
    # Armenian
    "Օ": "o", "օ": "o", "Ս": "u", "ս": "u", "Տ": "s", "ո": "n", "ռ": "n", "հ": "h", "զ": "q", "ց": "g",
    "լ": "l", "ա": "w",
    # Cherokee (capital forms; str.lower() maps them into the Cherokee small letters block)
    "Ꭺ": "a", "Ᏼ": "b", "Ꮯ": "c", "Ꭰ": "d", "Ꭼ": "e", "Ꮐ": "g", "Ꮋ": "h", "Ꭵ": "i", "Ꭻ": "j",
    "Ꮶ": "k", "Ꮮ": "l", "Ꮇ": "m", "Ꮲ": "p", "Ꮪ": "s", "Ꭲ": "t", "Ꮩ": "v", "Ꮃ": "w", "Ꮓ": "z",
}
# fmt: on

# Scripts whose letters can pose as Latin; a word mixing them with Latin letters is "mixed_script".
LOOKALIKE_SCRIPT_RANGES = (
    (0x0370, 0x03FF),  # Greek and Coptic
    (0x0400, 0x052F),  # Cyrillic and Cyrillic Supplement
    (0x0531, 0x058F),  # Armenian
    (0x13A0, 0x13FF),  # Cherokee
    (0x1C80, 0x1C8F),  # Cyrillic Extended-C
    (0x1F00, 0x1FFF),  # Greek Extended
    (0x2DE0, 0x2DFF),  # Cyrillic Extended-A
    (0xA640, 0xA69F),  # Cyrillic Extended-B
    (0xAB70, 0xABBF),  # Cherokee Supplement (small letters)
)


def char_class(*ranges: tuple[int, int]) -> str:
    """A regex character class body (without brackets) for inclusive code point ranges."""
    parts = []
    for first, last in ranges:
        parts.append(f"\\U{first:08x}" if first == last else f"\\U{first:08x}-\\U{last:08x}")
    return "".join(parts)


def in_ranges(code: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(first <= code <= last for first, last in ranges)


# Code points whose canonical fold differs from str.lower() (NFKC compatibility forms, accented Latin,
# removable characters, styled letters, exotic spaces), merged into ranges with gaps of up to 32 so the
# regex stays small. Generated with Python's unicodedata 14.0 by keeping every cp for which
# fold.fold_char(chr(cp)) != chr(cp).lower(); tests/test_normalize.py checks the property on random
# characters. Characters outside these ranges are only lower-cased: a newer Unicode adds no wrong offsets,
# at worst a look-alike that is not folded.
# fmt: off
FOLDING_RANGES = (
    (0x0080, 0x017F), (0x01A0, 0x0387), (0x03D0, 0x03F9), (0x0587, 0x0587), (0x061C, 0x061C),
    (0x0675, 0x0678), (0x0958, 0x095F), (0x09DC, 0x09DF), (0x0A33, 0x0A36), (0x0A59, 0x0A5E),
    (0x0B5C, 0x0B5D), (0x0E33, 0x0E33), (0x0EB3, 0x0EB3), (0x0EDC, 0x0EDD), (0x0F0C, 0x0F0C),
    (0x0F43, 0x0FB9), (0x10FC, 0x10FC), (0x115F, 0x1160), (0x1680, 0x1680), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x1AB0, 0x1AFF), (0x1D00, 0x1D78), (0x1D9B, 0x1EF9), (0x1F71, 0x1F7D),
    (0x1FBB, 0x20A8), (0x20D0, 0x2189), (0x222C, 0x2230), (0x2260, 0x226F), (0x2329, 0x232A),
    (0x2460, 0x24EA), (0x2A0C, 0x2A0C), (0x2A74, 0x2A76), (0x2ADC, 0x2ADC), (0x2C7C, 0x2C7D),
    (0x2D6F, 0x2D6F), (0x2E9F, 0x2E9F), (0x2EF3, 0x2FD5), (0x3000, 0x3000), (0x3036, 0x303A),
    (0x309B, 0x309F), (0x30FF, 0x30FF), (0x3131, 0x319F), (0x3200, 0x33FF), (0xA69C, 0xA69D),
    (0xA730, 0xA731), (0xA770, 0xA770), (0xA7F2, 0xA7F9), (0xAB5C, 0xAB69), (0xF900, 0xFAD9),
    (0xFB00, 0xFBB1), (0xFBD3, 0xFDC7), (0xFDF0, 0xFFFB), (0x10781, 0x107BA), (0x1BCA0, 0x1BCA3),
    (0x1D15E, 0x1D17A), (0x1D1BB, 0x1D1C0), (0x1D400, 0x1D7FF), (0x1EE00, 0x1EEBB), (0x1F100, 0x1F190),
    (0x1F1E6, 0x1F251), (0x1FBF0, 0x1FBF9), (0x2F800, 0x2FA1D), (0xE0000, 0xE007F), (0xE0100, 0xE01EF),
)
# fmt: on
