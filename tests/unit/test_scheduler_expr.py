"""Expression parsing and matching: every syntax form and error text of §6.2."""

from __future__ import annotations

import pytest

from shoal.scheduler.errors import ExprError
from shoal.scheduler.expr import Candidates, parse_expr, parse_exprs


@pytest.mark.parametrize(
    ("text", "key", "op", "value", "soft"),
    [
        ("node==node-1", "node", "==", "node-1", False),
        ("node!=node-1", "node", "!=", "node-1", False),
        ("node==~node-1", "node", "==", "node-1", True),
        ("node!=~node-1", "node", "!=", "node-1", True),
        ("storage==ssd*", "storage", "==", "ssd*", False),
        ("region==/us-(east|west)/", "region", "==", "/us-(east|west)/", False),
        ("_k.x-y==v", "_k.x-y", "==", "v", False),
        ("name==has space", "name", "==", "has space", False),
        ("node===x", "node", "==", "=x", False),
    ],
)
def test_parse_forms(text: str, key: str, op: str, value: str, soft: bool) -> None:
    e = parse_expr(text)
    assert (e.key, e.operator, e.value, e.soft) == (key, op, value, soft)


def test_eq_checked_before_neq() -> None:
    # "a!=b==c": `==` is found first, so the key is "a!=b", which is invalid.
    with pytest.raises(ExprError, match=r"^Key 'a!=b' is invalid$"):
        parse_expr("a!=b==c")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name=node0", "One of operator ==, != is expected"),
        ("nodenode0", "One of operator ==, != is expected"),
        ("x==a", "Key 'x' is invalid"),
        ("1ab==a", "Key '1ab' is invalid"),
        ("==a", "Key '' is invalid"),
        ("k y==a", "Key 'k y' is invalid"),
        ("node==", "Value '' is invalid"),
        ("node==~", "Value '~' is invalid"),
        ("node==a@b", "Value 'a@b' is invalid"),
        ("node==~~a", "Value '~~a' is invalid"),
        ("node=={x}", "Value '{x}' is invalid"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ExprError) as info:
        parse_expr(text)
    assert str(info.value) == message


def test_parse_exprs_stops_at_first_error() -> None:
    with pytest.raises(ExprError, match="Key 'x' is invalid"):
        parse_exprs(["node==a", "x==b", "y=c"])
    assert [e.text for e in parse_exprs(["a1==b", "c1!=d"])] == ["a1==b", "c1!=d"]


@pytest.mark.parametrize(
    ("text", "what", "expected"),
    [
        ("node==node-1", "node-1", True),
        ("node==node-1", "node-10", False),
        ("node==node-1", "xnode-1", False),
        ("node!=node-1", "node-1", False),
        ("node!=node-1", "node-2", True),
        ("node==node-*", "node-12", True),
        ("node==*-1", "node-1", True),
        ("node==n*e-1", "node-1", True),
        ("node==node-*", "other", False),
        ("node==node.1", "nodeX1", True),  # glob: "." is a regex character
        ("node==NODE-1", "node-1", False),  # case sensitive
        ("node==(?i)NODE-1", "node-1", True),  # (?i) inside a glob
        ("node==(?i)NODE-1", "xnode-1", False),
        ("node==/node-[0-9]+/", "my-node-42-x", True),  # regex is unanchored
        ("node==/^node-[0-9]+$/", "my-node-42", False),
        ("node==/(?i)NODE/", "a-node", True),
        ("node!=/(?i)NODE/", "a-node", False),
        ("node==/a|b/", "xbx", True),
        ("node==/[/", "[", False),  # invalid regex matches nothing
        ("node!=/[/", "[", True),
        ("node==a|b", "a", True),  # glob ^a|b$ alternation
        ("node==a|b", "b", True),
        ("node==has space", "has space", True),
    ],
)
def test_match(text: str, what: str, expected: bool) -> None:
    e = parse_expr(text)
    assert e.match(what) is expected
    assert e.match_candidates(Candidates([what])) is expected


def test_match_any_and_none() -> None:
    eq = parse_expr("image==redis*")
    neq = parse_expr("image!=redis*")
    assert eq.match("nginx", "redis:7") and not neq.match("nginx", "redis:7")
    assert not eq.match("nginx") and neq.match("nginx")
    # No candidates at all: == fails, != holds.
    assert not eq.match() and neq.match()
    assert not eq.match_candidates(Candidates([])) and neq.match_candidates(Candidates([]))


@pytest.mark.parametrize(
    "text",
    [
        "k1==abc",
        "k1==a.c",
        "k1==a*",
        "k1==*c",
        "k1==/b/",
        "k1==/^a/",
        "k1==(?i)A*",
        "k1==/(?i)B/",
        "k1==a|zz",
        "k1==x y",
        "k1==/a\\sb/",
        "k1==[ab]*",
    ],
)
@pytest.mark.parametrize(
    "values",
    [["abc"], ["zabc", "abc"], ["a b", "x y"], ["nope", "ab"], ["a\nb", "abc"], ["", "q"]],
)
def test_candidates_fast_paths_agree_with_plain_match(text: str, values: list[str]) -> None:
    for op in ("==", "!="):
        e = parse_expr(text.replace("==", op, 1))
        assert e.match_candidates(Candidates(values)) is e.match(*values), (op, text, values)


def test_listing_forms() -> None:
    e = parse_expr("node!=~n1")
    assert e.text == "node!=n1"
    assert e.listing == "node!=n1 (soft=true)"
    assert parse_expr("a1==b").listing == "a1==b (soft=false)"


@pytest.mark.parametrize(
    ("text", "what", "expected"),
    [
        # Go (RE2) syntax that Python's `re` spells differently is taken as Go means it.
        ("node==/^(?i)abc$/", "ABC", True),
        ("node==/^(?i)abc$/", "ABC\n", False),  # `$` is the end of text
        ("node==/a(?i)b|c/", "C", True),  # the flag runs past `|` to the group's end
        ("node==/(x(?i)y)z/", "xYz", True),
        ("node==/(x(?i)y)z/", "xYZ", False),
        ("node==/[(?i)]/", "(", True),
        ("node==/[(?i)]/", "I", False),
        ("node==/a\\z/", "xa", True),
        ("node==/(?m)^a$/", "x\na\ny", True),
        ("node==/\\$/", "a$", True),
        ("node==/^\\w+$/", "caf\u00e9", False),  # \w is ASCII, as in Go
        ("node==/^caf.$/", "caf\u00e9", True),  # `.` is one rune, not one byte
    ],
)
def test_go_syntax(text: str, what: str, expected: bool) -> None:
    assert parse_expr(text).match(what) is expected


@pytest.mark.timeout(60, method="thread")
def test_nested_quantifier_does_not_backtrack() -> None:
    # Python's `re` would run for ever here (and not answer to a timeout signal).
    e = parse_expr("container==/([0-9a-f]+)+z/")
    ids = [f"{i:064x}" for i in range(200)]
    assert not e.match(*ids)
    assert not e.match_candidates(Candidates(ids))
    assert parse_expr("container!=/([0-9a-f]+)+z/").match("f" * 100_000)
