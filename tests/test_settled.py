"""Where a stream may be cut: only words that more text cannot turn into (part of) a finding are settled."""

import pytest

from vallum.core.settled import PLAIN_RUN, TOKEN_FOLLOW, settled_length
from vallum.detectors.secrets import KEYWORD_WINDOW_AFTER


def unsettled(text: str) -> str:
    return text[settled_length(text) :]


def test_lower_case_prose_settles_all_but_its_last_words() -> None:
    assert unsettled("we looked at the numbers and they are fi") == "they are fi"
    assert unsettled("we looked at the numbers and they are ") == "they are "


@pytest.mark.parametrize(
    ("text", "held"),
    [
        (
            "your card is 4111 1111 11",
            "card is 4111 1111 11",
        ),  # groups of digits chain, with two words before
        ("call me on +1 (415) 555-26", "me on +1 (415) 555-26"),
        ("she was born on march 12, 19", "on march 12, 19"),  # a lower-case month before the digits
        ("write to po box 12", "po box 12"),
        ("the office of John Smith", "office of John Smith"),
    ],
)
def test_words_that_may_begin_a_number_or_a_name_are_held_with_what_follows(text: str, held: str) -> None:
    assert unsettled(text) == held


def test_a_capitalised_word_holds_the_plain_words_within_reach_of_it() -> None:
    text = "Dear customer, we are sorry about the delay"
    assert unsettled(text) == "about the delay"
    assert unsettled("Dear customer, we are") == "Dear customer, we are"


def test_an_unclosed_bracket_holds_everything_from_it() -> None:
    assert (
        unsettled("as shown in the page that follows <img src=x alt=a b c d e f")
        == "<img src=x alt=a b c d e f"
    )
    link = "as shown in the page that follows ![a cat picture of mine](https://x.test/?q=a b c"
    assert unsettled(link) == "![a cat picture of mine](https://x.test/?q=a b c"
    assert unsettled("a [link text](u) and then some more words") == "some more words"


def test_a_long_token_waits_for_a_keyword_written_after_it() -> None:
    text = "the value AKC1234567890abc is for the"
    assert "AKC1234567890abc" in unsettled(text)
    later = text + " x" * (TOKEN_FOLLOW // 2)
    assert "AKC" not in unsettled(later)
    assert TOKEN_FOLLOW >= KEYWORD_WINDOW_AFTER


def test_text_in_a_script_without_case_stays_held() -> None:
    assert unsettled("日本語の テキスト です") == "日本語の テキスト です"


def test_an_empty_or_whitespace_text_is_settled() -> None:
    assert settled_length("") == 0
    assert settled_length("   ") == 3
    assert PLAIN_RUN >= 2  # the lower-case heads above ("po box", "on march") are two words


def test_link_text_at_the_end_is_held_until_what_follows_shows_whether_a_url_does() -> None:
    link = "![a picture of our lovely garden in the spring]"
    assert unsettled(f"as shown here {link}") == link
    assert unsettled(f"as shown here {link} and the rest") == "and the rest"


def test_a_bracket_closes_only_its_own_kind() -> None:
    assert (
        unsettled("first (see <img src=x) and then some more words") == "<img src=x) and then some more words"
    )
    many = "(" * 3000 + "}" * 3000 + " done"  # stray closers: linear work, and the first "(" is still open
    assert settled_length(many) == 0
