"""Find and decode encoded payloads (base64, hex, URL percent-encoding) and spot ROT13 text.

Candidates are found on a one-byte-per-character ASCII projection of the text with regexes that begin
with a literal run, so ordinary prose is skipped at memchr speed. A decode is kept only when it yields
mostly printable, word-like text. Decoded text is searched again up to a depth limit, and the total
decoded size and the number of decode attempts are bounded, so hostile input cannot make this slow.
"""

from __future__ import annotations

import binascii
import math
import re
from dataclasses import dataclass
from urllib.parse import unquote

import numpy as np

MAX_DEPTH = 2
MAX_DECODED_CHARS = 64 * 1024
MAX_ATTEMPTS = 2048  # each attempt is C-speed work plus a little Python; this caps the Python part
_MAX_CANDIDATE_CHARS = MAX_DECODED_CHARS * 2  # longer runs are decoded from their start only


@dataclass(frozen=True, slots=True)
class Payload:
    """Decoded text of kind `kind` that came from text[start:end] of the scanned text."""

    kind: str
    text: str
    start: int
    end: int
    suspicious: bool = True  # False where the encoding is ordinary (a URL with a few %20)


@dataclass(slots=True)
class DecodeBudget:
    chars_left: int = MAX_DECODED_CHARS
    attempts_left: int = MAX_ATTEMPTS
    exhausted: bool = False

    def spend(self, chars: int) -> bool:
        self.attempts_left -= 1
        if self.attempts_left < 0 or chars > self.chars_left:
            self.exhausted = True
            return False
        self.chars_left -= chars
        return True


def _class_table(members: bytes, mark: bytes) -> bytes:
    table = bytearray(b"." * 256)
    for byte in members:
        table[byte] = mark[0]
    return bytes(table)


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
_B64_CLASS = bytearray(_class_table(_B64_ALPHABET, b"b"))
_B64_CLASS[ord("=")] = ord("=")
_B64_TABLE = bytes(_B64_CLASS)
_HEX_CLASS = bytearray(_class_table(b"0123456789abcdefABCDEF", b"h"))
for _sep in b" :,":
    _HEX_CLASS[_sep] = ord("s")
_HEX_TABLE = bytes(_HEX_CLASS)

# Minimum payload sizes: 16 base64 characters (12 bytes), 8 hex bytes, 4 escaped bytes, 3 URL escapes.
_B64_RUN = re.compile(rb"bbbbbbbbbbbbbbbb+=?=?")
_HEX_RUN = re.compile(rb"hhhhhhhhhhhhhhhh+")
_HEX_SPACED_RUN = re.compile(rb"hhshhshhshhshhshhshhshh(?:shh)*")
_HEX_ESCAPED_RUN = re.compile(r"\\x[0-9A-Fa-f]{2}(?:\\x[0-9A-Fa-f]{2}){3,}")
_URL_ESCAPES = re.compile(r"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2})*")
_URL_UNRESERVED_ESCAPE = re.compile(r"%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9])")
_SPACE = re.compile(r"\s")
_TOKEN_TAIL = re.compile(r"\S*\Z")
_NOT_SPACE = re.compile(r"\S*")
_TOKEN_REACH = 2048
_NON_PRINTABLE = re.compile(r"[^\t\n\r\x20-\x7e\xa0-\U0010ffff]|\ufffd")
_WORDISH = re.compile(r"[^\W_]|\s")
_LETTER = re.compile(r"[^\W\d_]")


def looks_like_text(text: str) -> bool:
    """Mostly printable and mostly letters, digits and spaces: what a smuggled instruction looks like."""
    n = len(text)
    if n < 4:
        return False
    if len(_NON_PRINTABLE.findall(text)) > n * 0.02 or len(set(text[:256])) < 4:
        return False
    return len(_WORDISH.findall(text)) >= n * 0.7 and len(_LETTER.findall(text)) >= n * 0.3


def _as_text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if looks_like_text(text) else None


def _decode_base64(token: str) -> str | None:
    if token.islower() or token.isupper():
        return None  # "state-of-the-art", "/usr/local/bin/": base64 of text mixes cases
    body = token.rstrip("=")
    if "-" in body or "_" in body:
        if "+" in body or "/" in body:
            return None
        body = body.replace("-", "+").replace("_", "/")
    body = body[: _MAX_CANDIDATE_CHARS - _MAX_CANDIDATE_CHARS % 4]
    if len(body) % 4 == 1:
        body = body[:-1]
    try:
        data = binascii.a2b_base64(body + "=" * (-len(body) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    return _as_text(data)


def _decode_hex(token: str) -> str | None:
    digits = re.sub(r"[^0-9A-Fa-f]", "", token.replace("\\x", ""))[:_MAX_CANDIDATE_CHARS]
    try:
        data = bytes.fromhex(digits[: len(digits) - len(digits) % 2])
    except ValueError:
        return None
    return _as_text(data)


def _decode_url(token: str) -> str | None:
    try:
        decoded = unquote(token[:_MAX_CANDIDATE_CHARS], errors="strict")
    except UnicodeDecodeError:
        return None
    return decoded if decoded != token and looks_like_text(decoded) else None


def _url_tokens(text: str) -> list[tuple[int, int, bool]]:
    """Whitespace-delimited tokens with percent-escapes: (start, end, suspicious)."""
    tokens: list[tuple[int, int, bool]] = []
    for match in _URL_ESCAPES.finditer(text):
        start, end = match.span()
        if tokens and tokens[-1][1] >= start:
            continue  # already inside the previous token
        tail = _TOKEN_TAIL.search(text, max(0, start - _TOKEN_REACH), start)
        token_start = tail.start() if tail else start
        token_end = _NOT_SPACE.match(text, end, min(len(text), end + _TOKEN_REACH))
        token_end_pos = token_end.end() if token_end else end
        token = text[token_start:token_end_pos]
        escapes = token.count("%")
        if escapes < 3 and not _URL_UNRESERVED_ESCAPE.search(token):
            continue
        suspicious = bool(_URL_UNRESERVED_ESCAPE.search(token)) or escapes * 3 >= len(token) * 0.5
        tokens.append((token_start, token_end_pos, suspicious))
    return tokens


# Hex before base64 where both start together: hex digits are base64 characters too.
_TRY_ORDER = {"hex": 0, "url": 1, "base64": 2}


def _candidates(text: str) -> list[tuple[int, int, str, bool]]:
    """(start, end, kind, suspicious) for every span that might hold a payload, by start."""
    found: list[tuple[int, int, str, bool]] = []
    projection = text.encode("ascii", "replace")  # one byte per character: positions carry over
    hex_class = projection.translate(_HEX_TABLE)
    if b"hhhhhhhhhhhhhhhh" in hex_class:
        found.extend((m.start(), m.end(), "hex", True) for m in _HEX_RUN.finditer(hex_class))
    if b"hhshhshh" in hex_class:
        found.extend((m.start(), m.end(), "hex", True) for m in _HEX_SPACED_RUN.finditer(hex_class))
    if "\\x" in text:
        found.extend((m.start(), m.end(), "hex", True) for m in _HEX_ESCAPED_RUN.finditer(text))
    b64_class = projection.translate(_B64_TABLE)
    if b"bbbbbbbbbbbbbbbb" in b64_class:
        found.extend((m.start(), m.end(), "base64", True) for m in _B64_RUN.finditer(b64_class))
    if "%" in text:
        found.extend((start, end, "url", suspicious) for start, end, suspicious in _url_tokens(text))
    if len(found) > 1:
        found.sort(key=lambda c: (c[0], _TRY_ORDER[c[2]]))
    return found


_DECODERS = {"base64": _decode_base64, "hex": _decode_hex, "url": _decode_url}


def decode_payloads(
    text: str, budget: DecodeBudget | None = None, depth: int = 1, max_depth: int = MAX_DEPTH
) -> list[Payload]:
    """Payloads in text (spans in text), and payloads nested in them (spans of their outermost payload)."""
    candidates = _candidates(text)
    if not candidates:
        return []
    if budget is None:
        budget = DecodeBudget()
    payloads: list[Payload] = []
    claimed_until = 0
    for start, end, kind, suspicious in candidates:
        if start < claimed_until:
            continue
        if budget.attempts_left <= 0:
            budget.exhausted = True
            break
        decoded = _DECODERS[kind](text[start:end])
        if decoded is None:
            budget.attempts_left -= 1
            continue
        if not budget.spend(len(decoded)):
            break
        claimed_until = end
        payloads.append(Payload(kind, decoded, start, end, suspicious))
        if depth < max_depth:
            for inner in decode_payloads(decoded, budget, depth + 1, max_depth):
                payloads.append(Payload(inner.kind, inner.text, start, end, inner.suspicious))
    return payloads


# ---- ROT13 ----------------------------------------------------------------------------------------------

ROT13 = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZabcdefghijklm",
)
# Frequent English words (and prompt-attack vocabulary) whose ROT13 image is not itself English.
_ENGLISH = frozenset(
    """the and you that this with for are was have not but what all were when your can said there use
    each which she how their will other about out many then them these some her would make like him into
    time has look two more write see number way could people than first water been call who its now find
    long down day did get come made may part please tell me give my is it to of in system prompt ignore
    previous instructions rules password secret reveal forget disregard assistant user above below
    pretend act developer mode jailbreak without any restrictions""".split()  # noqa: SIM905
)
_ROT13_WORDS = frozenset(word.translate(ROT13) for word in _ENGLISH) - _ENGLISH
_COMMON_WORDS = frozenset(word for word in _ENGLISH if word.translate(ROT13) not in _ENGLISH)
_WORD = re.compile(r"[a-z]+")
_ROT13_MENTION = re.compile(rb"rot[ _-]?13")  # literal prefix: a fast scan
_LETTER_FREQUENCY = bytes.maketrans(b"etaorgnb", b"EEEERRRR")
_NOT_FREQUENCY_MARK = bytes(set(range(256)) - set(b"etaorgnb"))
_MAX_WORDS = 4096
# Letter frequencies (per cent) pooled over Latin-script languages (English, Romance, Germanic, Slavic,
# Turkish, Indonesian): the word list above is English, this catches ROT13 of Spanish or Polish too.
_LATIN_LETTERS = dict(
    e=12.0, a=9.0, i=8.0, n=7.5, o=7.0, r=6.5, s=6.5, t=6.5, l=4.5, d=4.0, u=4.0, c=3.5, m=3.0,
    p=2.5, h=2.5, g=1.8, b=1.5, v=1.2, k=1.2, f=1.0, z=1.0, w=0.9, y=0.9, j=0.6, q=0.2, x=0.2,
)  # fmt: skip
# Vietnamese's unaccented letters (ROT13 tools leave its accented vowels as they are): no f, j, w or z, few
# bare vowels, and rich in n, h, t, c and g, whose ROT13 (a, u, g, p, t) reads like ordinary text against
# the pooled table above. Measured on the Vietnamese of training/multilingual.yaml; letters it lacks get a
# floor (loanwords).
_VIETNAMESE_LETTERS = dict(
    n=12.5, h=12.0, t=12.0, i=9.5, c=9.0, g=6.5, u=4.5, v=4.0, m=4.0, o=3.5, a=3.5, l=3.3, b=3.0, r=2.2,
    y=2.2, p=1.9, k=1.7, q=1.5, s=1.5, d=1.2, e=0.6, x=0.3, f=0.05, j=0.05, w=0.05, z=0.05,
)  # fmt: skip


def _letter_rows(*tables: dict[str, float]) -> np.ndarray:
    """Rows over byte values: each table's log-probability of a letter in its language, then as ROT13 of
    it, and last a row that counts letters. One product with a text's byte histogram gives all of them."""
    rows = np.zeros((2 * len(tables) + 1, 256))
    for i, table in enumerate(tables):
        total = sum(table.values())
        for letter, share in table.items():
            rows[2 * i, ord(letter)] = math.log(share / total)
            rows[2 * i + 1, ord(letter)] = math.log(table[letter.translate(ROT13)] / total)
    rows[-1, ord("a") : ord("z") + 1] = 1.0
    return rows


_LETTER_ROWS = _letter_rows(_LATIN_LETTERS, _VIETNAMESE_LETTERS)
# Mean gain per letter (the best ROT13 reading's log-likelihood over the best plain one's) above which a
# text reads as ROT13. Plain text of every language in the training and held-out sets stays below 0.25
# (base64 comes closest, at 0.22); ROT13 of 99 % of its attacks scores over 0.3.
_MIN_ROT13_GAIN = 0.35
_MIN_ROT13_LETTERS = 24
_LETTERS = re.compile(r"[a-z].*[a-z]", re.DOTALL)


def rot13_evidence(canonical: str, projection: bytes, ascii_letters: bytes | None) -> tuple[int, int] | None:
    """The range of canonical text that reads as ROT13 (first to last ROT13 word, or first to last letter
    when its letter statistics give it away), or None.

    projection is canonical.encode("ascii", "replace"). ascii_letters (None for an ASCII text) are the
    original text's own ASCII letters in lower case: ROT13 tools turn only those, so in a language with
    accents they carry the signal that folding the accents away dilutes. A cheap letter-frequency test runs
    first: ROT13 swaps frequent e, t, a, o with r, g, n, b.
    """
    marks = projection.translate(_LETTER_FREQUENCY, _NOT_FREQUENCY_MARK)
    mentioned = _ROT13_MENTION.search(projection) is not None
    if mentioned or marks.count(b"R") > marks.count(b"E") or b" gur " in projection:
        return _rot13_words(canonical, mentioned) or _rot13_letters(canonical, projection, ascii_letters)
    # The cheap test knows European vowels only: a text with accents gets the letter test whatever it says.
    return None if ascii_letters is None else _rot13_letters(canonical, ascii_letters)


def rot13_gain(letters: bytes) -> tuple[float, int]:
    """Mean log-likelihood gain per letter of reading the text as ROT13 (the best ROT13 reading over the best
    plain one, across the letter tables), and the number of letters."""
    latin, latin_rot, vietnamese, vietnamese_rot, total = (
        _LETTER_ROWS @ np.bincount(np.frombuffer(letters, dtype=np.uint8), minlength=256)
    ).tolist()
    if not total:
        return 0.0, 0
    return (max(latin_rot, vietnamese_rot) - max(latin, vietnamese)) / total, int(total)


def _rot13_letters(canonical: str, *letter_sets: bytes | None) -> tuple[int, int] | None:
    if not any(
        total >= _MIN_ROT13_LETTERS and gain >= _MIN_ROT13_GAIN
        for gain, total in (rot13_gain(letters) for letters in letter_sets if letters is not None)
    ):
        return None
    found = _LETTERS.search(canonical)
    return found.span() if found else None


def _rot13_words(canonical: str, mentioned: bool) -> tuple[int, int] | None:
    first = last = -1
    rot_hits = plain_hits = 0
    for count, match in enumerate(_WORD.finditer(canonical)):
        if count >= _MAX_WORDS:
            break
        word = match.group()
        if word in _ROT13_WORDS:
            rot_hits += 1
            if first < 0:
                first = match.start()
            last = match.end()
        elif word in _COMMON_WORDS:
            plain_hits += 1
    if (rot_hits >= 3 and rot_hits * 2 >= plain_hits) or (mentioned and rot_hits >= 1):
        return first, last
    return None
