"""Client-supplied Go regexes: RE2 semantics, bounds, cache and the invalid-pattern answer."""

from __future__ import annotations

import pytest

from shoal import textmatch
from shoal.textmatch import MAX_PATTERN_LENGTH, compile_go, search


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("abc", "xabcx", True),  # unanchored, like Go's MatchString
        ("^abc$", "xabc", False),
        ("^(?i)ABC$", "abc", True),  # a flag group anywhere
        ("a$", "a\nb", False),  # `$` is the end of text, not of a line
        ("(?m)a$", "a\nb", True),
        ("a\\z", "ba", True),
        ("^\\d+$", "\u0661\u0662", False),  # Arabic-Indic digits: \d is ASCII in Go
        ("^.{4}$", "caf\u00e9", True),  # runes, not bytes
        ("", "anything", True),
    ],
)
def test_go_semantics(pattern: str, text: str, expected: bool) -> None:
    assert search(pattern, text) is expected


@pytest.mark.parametrize(
    "pattern",
    ["[", "(a", "a**", "x{1001}", "(?P<n", "\\8", "a{2,1}", "((a{100}){100}){100}"],
)
def test_patterns_go_refuses_do_not_compile(pattern: str) -> None:
    assert compile_go(pattern) is None
    assert search(pattern, "a" * 50) is None


def test_pattern_length_bound() -> None:
    assert compile_go("a" * MAX_PATTERN_LENGTH) is not None
    assert compile_go("a" * (MAX_PATTERN_LENGTH + 1)) is None


def test_compiled_patterns_are_cached_and_the_cache_is_bounded() -> None:
    assert compile_go("node-[0-9]+") is compile_go("node-[0-9]+")
    assert compile_go.cache_info().maxsize == textmatch.CACHE_SIZE
    for i in range(textmatch.CACHE_SIZE + 10):
        compile_go(f"unique-{i}")
    assert compile_go.cache_info().currsize == textmatch.CACHE_SIZE


def test_lone_surrogates_are_not_an_error() -> None:
    # A JSON filter may carry "\ud800"; it must neither raise nor match a plain string.
    assert search("a", "\ud800a") is True
    assert search("\ud800", "abc") in (None, False)


@pytest.mark.timeout(60, method="thread")
def test_nested_quantifiers_run_in_linear_time() -> None:
    # Each of these runs for ever (without releasing the GIL) under Python's `re`.
    text = "0123456789abcdef" * 10_000
    assert search("([0-9a-f]+)+z", text) is False
    assert search("(a|a)*b", "a" * 100_000) is False
    assert search("(\\w+\\s?)*$", "word " * 20_000 + "!") is True
