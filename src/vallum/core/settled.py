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
- everything from a bracket not yet closed (`[ ( { <`), or from the "[" of a "[text]" at the very end:
  markup, HTML attributes and Markdown links span words, and are judged once closed;
- a long marked token (a key, an id) until `TOKEN_FOLLOW` characters follow it, since some key formats
  are only recognised by a keyword written after them.

Lower-case prose settles two words behind the stream, so a reader sees the first words of an answer at
once instead of after a fixed hold-back of 160 characters, about 40 tokens of a real model's output.
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
    """Length of the prefix of `text` that, for the formats the detectors know, no continuation should make
    part of a finding it does not have now (the README lists the known exceptions)."""
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
    unclosed = open_construct(text)
    return cut if unclosed is None else min(cut, unclosed)


def _plain(word: str) -> bool:
    core = word.strip(_EDGE)
    bare = core.translate(_INNER)
    return bool(bare) and bare.isalpha() and bare.islower()


def open_construct(text: str) -> int | None:
    """Where the bracketed construct that the end of `text` may still belong to begins: the first bracket
    still open, or, when the text ends with "]", the "[" of that Markdown link text, whose "(url)" may
    follow. A closer closes the latest opener of its own kind only, so "(<img src=x)" leaves the tag open,
    and the work stays linear whatever the brackets."""
    open_at: dict[str, list[int]] = {opener: [] for opener in _CLOSES.values()}
    opened_by: dict[int, int] = {}  # position of a closer -> position of its opener
    for match in _BRACKET.finditer(text):
        char, at = match.group(), match.start()
        if char in open_at:
            open_at[char].append(at)
        elif stack := open_at[_CLOSES[char]]:
            opened_by[at] = stack.pop()
    starts = [stack[0] for stack in open_at.values() if stack]
    if text.endswith("]") and (bracket := opened_by.get(len(text) - 1)) is not None:
        starts.append(bracket)
    if not starts:
        return None
    first = min(starts)
    # "[text](" is one Markdown link (or, with "!", an image that loads the URL): hold its text with it.
    if (
        text[first] == "("
        and text[first - 1 : first] == "]"
        and (bracket := opened_by.get(first - 1)) is not None
    ):
        first = bracket
    return first - 1 if text[first] == "[" and text[first - 1 : first] == "!" else first
