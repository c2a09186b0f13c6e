"""How much of a streamed text can be judged now: all of it but the words that more text could still turn
into (part of) a secret, a number or a name.

A single token is judged whole once whitespace follows it. What spans several words (a card number in
groups, a phone number, an IBAN, an address, a date of birth) is made of words with digits or capitals,
with at most a couple of lower-case words at its head ("po box 12", "march 3, 1990"). So the unsettled
tail of a text is:

- its unfinished last word;
- before that, every "marked" word (anything but a lower-case word: digits, capitals, symbols, scripts
  without case) reachable with at most `PLAIN_RUN` lower-case words between them, and `PLAIN_RUN`
  lower-case words before the first;
- everything from a bracket not yet closed (`[ ( { <`): markup, HTML attributes and Markdown links span
  words, and are judged once closed;
- a long marked token (a key, an id) until `TOKEN_FOLLOW` characters follow it, since some key formats
  are only recognised by a keyword written after them.

Lower-case prose settles two words behind the stream, so a reader sees the first words of an answer at
once instead of after a fixed hold-back of characters, which on a real model's token rate is seconds.
"""

from __future__ import annotations

import re

PLAIN_RUN = 2
# At least the secrets detector's KEYWORD_WINDOW_AFTER (a test holds them together).
TOKEN_FOLLOW = 40
LONG_TOKEN = 10

_WORD = re.compile(r"\S+")
_BRACKET = re.compile(r"[\[\](){}<>]")
_CLOSES = {")": "(", "]": "[", "}": "{", ">": "<"}
_EDGE = "\"'`.,;:!?()[]{}<>«»“”‘’…"
_INNER = str.maketrans("", "", "-'’")


def settled_length(text: str) -> int:
    """Length of the prefix of `text` that no continuation can make part of a finding it does not have now."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    cut = len(text)
    if words and words[-1][1] == len(text):
        cut = words.pop()[0]
    plain_left = PLAIN_RUN
    for start, end in reversed(words):
        if _plain(text[start:end]):
            if plain_left == 0:
                break
            plain_left -= 1
        else:
            plain_left = PLAIN_RUN
        cut = start
    for start, end in reversed(words):
        if len(text) - end >= TOKEN_FOLLOW:
            break
        if end - start >= LONG_TOKEN and not _plain(text[start:end]):
            cut = min(cut, start)
    unclosed = _first_unclosed(text)
    return cut if unclosed is None else min(cut, unclosed)


def _plain(word: str) -> bool:
    core = word.strip(_EDGE)
    bare = core.translate(_INNER)
    return bool(bare) and bare.isalpha() and bare.islower()


def _first_unclosed(text: str) -> int | None:
    open_at: list[tuple[str, int]] = []
    opened_by: dict[int, int] = {}  # position of a closing "]" -> position of its "["
    for match in _BRACKET.finditer(text):
        char, at = match.group(), match.start()
        if char not in _CLOSES:
            open_at.append((char, at))
            continue
        for depth in range(len(open_at) - 1, -1, -1):  # a stray closer leaves the openers as they are
            if open_at[depth][0] == _CLOSES[char]:
                opened_by[at] = open_at[depth][1]
                del open_at[depth:]
                break
    if not open_at:
        return None
    first = open_at[0][1]
    # "[text](" is one Markdown link (or, with "!", an image that loads the URL): hold its text with it.
    if text[first] == "(" and first > 0 and (bracket := opened_by.get(first - 1)) is not None:
        first = bracket - 1 if bracket > 0 and text[bracket - 1] == "!" else bracket
    return first
