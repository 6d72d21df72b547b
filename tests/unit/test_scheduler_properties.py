"""Hypothesis properties: filters keep exactly the nodes their rule allows; spread balances;
the kept rankings give what the full pipeline gives."""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.scheduler import Scheduler
from shoal.scheduler.errors import ExprError, FilterError, SchedulerError
from shoal.scheduler.filters import make_filters
from shoal.scheduler.node import Node, NodeContainer
from shoal.scheduler.request import PlacementRequest

WORDS = ["a", "b", "ab", "ba", "x1", "web", "db"]
word = st.sampled_from(WORDS)
glob_value = st.lists(st.sampled_from([*WORDS, "*"]), min_size=1, max_size=3).map("".join)
regex_value = word.map(lambda w: f"/{w}/")
value = st.one_of(glob_value, regex_value)
LABEL_KEYS = ["zone", "disk"]


@st.composite
def containers(draw: Any, idx: int) -> NodeContainer:
    port = draw(st.sampled_from(["", "80", "81"]))
    proto = draw(st.sampled_from(["tcp", "udp"]))
    ip = draw(st.sampled_from(["", "127.0.0.1", "127.0.0.2"]))
    host_mode = draw(st.booleans())
    hc: dict[str, Any] = {
        "PortBindings": {f"{port or 80}/{proto}": [{"HostIp": ip, "HostPort": port}]}
    }
    if host_mode:
        hc["NetworkMode"] = "host"
    return NodeContainer(
        id=draw(st.sampled_from(["0", "1", "2"])) + f"{idx:063x}",
        names=[f"/{draw(word)}{idx}"] if draw(st.booleans()) else [],
        labels={k: draw(word) for k in LABEL_KEYS if draw(st.booleans())},
        host_config=hc,
        config_exposed_ports=[f"{draw(st.sampled_from(['80', '81']))}/tcp"],
        state=draw(st.sampled_from(["running", "exited"])),
    )


@st.composite
def nodes(draw: Any) -> list[Node]:
    out = []
    counter = 0
    for i in range(draw(st.integers(1, 5))):
        cs = []
        for _ in range(draw(st.integers(0, 4))):
            counter += 1
            cs.append(draw(containers(counter)))
        labels = {k: draw(word) for k in LABEL_KEYS if draw(st.booleans())}
        if draw(st.booleans()):
            labels["containerslots"] = draw(st.sampled_from(["0", "1", "2", "3", "x"]))
        out.append(
            Node(
                id=f"E{i}",
                name=draw(word) + str(i),
                labels=labels,
                health=draw(st.sampled_from([0, 50, 100])),
                containers=cs,
            )
        )
    return out


def rule(keys: list[str]) -> Any:
    return st.tuples(st.sampled_from(keys), st.sampled_from(["==", "!=", "==~", "!=~"]), value).map(
        lambda t: f"{t[0]}{t[1]}{t[2]}"
    )


def oracle_found(val: str, cands: list[str]) -> bool:
    if len(val) >= 2 and val[0] == val[-1] == "/":
        return any(val[1:-1] in c for c in cands)
    return any(fnmatch.fnmatchcase(c, val) for c in cands)


def oracle_ok(expr: str, cands: list[str]) -> bool:
    op = "==" if "==" in expr else "!="
    _, val = expr.split(op, 1)
    found = oracle_found(val.lstrip("~"), cands)
    return found if op == "==" else not found


def applies(expr: str, soft: bool) -> bool:
    return soft or "~" not in expr


def run_filter(name: str, cfg: dict[str, Any], ns: list[Node], soft: bool) -> list[Node] | None:
    (f,) = make_filters([name])
    try:
        out = f.apply(PlacementRequest.from_config(cfg), ns, soft)
    except FilterError:
        return None
    ids = [id(n) for n in ns]
    assert [id(n) for n in out] == sorted((id(n) for n in out), key=ids.index)
    return out


def check_exact(name: str, cfg: dict[str, Any], ns: list[Node], soft: bool, keep: Any) -> None:
    """The filter keeps exactly the nodes `keep` allows (error iff none)."""
    out = run_filter(name, cfg, ns, soft)
    expected = [n for n in ns if keep(n)]
    if out is None:
        assert expected == []
    else:
        assert [n.name for n in out] == [n.name for n in expected]


@settings(max_examples=150, deadline=None)
@given(ns=nodes(), exprs=st.lists(rule(["node", *LABEL_KEYS]), max_size=3), soft=st.booleans())
def test_constraint_filter_exact(ns: list[Node], exprs: list[str], soft: bool) -> None:
    def keep(n: Node) -> bool:
        for e in exprs:
            if not applies(e, soft):
                continue
            key = e.split("=" if "==" in e else "!", 1)[0]
            cands = [n.id, n.name] if key == "node" else [n.labels.get(key, "")]
            if not oracle_ok(e, cands):
                return False
        return True

    check_exact("constraint", {"Env": [f"constraint:{e}" for e in exprs]}, ns, soft, keep)


@settings(max_examples=150, deadline=None)
@given(ns=nodes(), exprs=st.lists(rule(["container", *LABEL_KEYS]), max_size=3), soft=st.booleans())
def test_affinity_filter_exact(ns: list[Node], exprs: list[str], soft: bool) -> None:
    def keep(n: Node) -> bool:
        for e in exprs:
            if not applies(e, soft):
                continue
            key = e.split("=" if "==" in e else "!", 1)[0]
            if key == "container":
                cands = [
                    s for c in n.containers if c.names for s in (c.id, c.names[0].removeprefix("/"))
                ]
            else:
                cands = [c.labels.get(key, "") for c in n.containers]
            if not oracle_ok(e, cands):
                return False
        return True

    check_exact("affinity", {"Env": [f"affinity:{e}" for e in exprs]}, ns, soft, keep)


@settings(max_examples=100, deadline=None)
@given(
    ns=nodes(),
    lists=st.lists(
        st.lists(
            st.sampled_from([f"{w}{i}" for w in WORDS for i in range(5)]), min_size=1, max_size=4
        ),
        max_size=3,
    ),
    soft=st.booleans(),
)
def test_whitelist_filter_exact(ns: list[Node], lists: list[list[str]], soft: bool) -> None:
    cfg = {"Env": [f"whitelist:node=={'|'.join(names)}" for names in lists]}
    check_exact("whitelist", cfg, ns, soft, lambda n: all(n.name in ls for ls in lists))


@settings(max_examples=100, deadline=None)
@given(ns=nodes())
def test_health_and_slots_filters_exact(ns: list[Node]) -> None:
    check_exact("health", {}, ns, True, lambda n: n.health > 0)

    def slots_ok(n: Node) -> bool:
        raw = n.labels.get("containerslots")
        return raw is None or not raw.isdigit() or len(n.containers) < int(raw)

    check_exact("containerslots", {}, ns, True, slots_ok)


def oracle_port_free(n: Node, port: str, proto: str, ip: str) -> bool:
    if not port:
        return True
    for c in n.containers:
        for src in (c.host_config.get("PortBindings") or {}, c.network_ports or {}):
            for key, bs in src.items():
                for b in bs or []:
                    same_proto = [*key.split("/"), "tcp"][1] == proto
                    if (
                        b["HostPort"]
                        and b["HostPort"] == port
                        and same_proto
                        and (
                            b["HostIp"] == ip
                            or b["HostIp"] in ("", "0.0.0.0")
                            or ip in ("", "0.0.0.0")
                        )
                    ):
                        return False
    return True


@settings(max_examples=150, deadline=None)
@given(
    ns=nodes(),
    port=st.sampled_from(["", "80", "81"]),
    proto=st.sampled_from(["tcp", "udp"]),
    ip=st.sampled_from(["", "127.0.0.1", "127.0.0.2"]),
    host=st.booleans(),
)
def test_port_filter_exact(ns: list[Node], port: str, proto: str, ip: str, host: bool) -> None:
    if host:
        want = f"{port or 80}/tcp"
        cfg: dict[str, Any] = {"ExposedPorts": {want: {}}, "HostConfig": {"NetworkMode": "host"}}

        def keep(n: Node) -> bool:
            return not any(
                c.host_config.get("NetworkMode") == "host" and want in c.config_exposed_ports
                for c in n.containers
            )
    else:
        cfg = {"HostConfig": {"PortBindings": {f"80/{proto}": [{"HostIp": ip, "HostPort": port}]}}}

        def keep(n: Node) -> bool:
            return oracle_port_free(n, port, proto, ip)

    check_exact("port", cfg, ns, True, keep)


@settings(max_examples=100, deadline=None)
@given(ns=nodes(), pick=st.integers(0, 50), form=st.sampled_from(["bare", "slash", "node"]))
def test_dependency_filter_only_keeps_nodes_holding_target(
    ns: list[Node], pick: int, form: str
) -> None:
    named = [(n, c) for n in ns for c in n.containers if c.names]
    target = named[pick % len(named)][1].names[0][1:] if named else "nothing"
    owner = named[pick % len(named)][0] if named else None
    ref = {
        "bare": target,
        "slash": "/" + target,
        "node": f"{owner.name if owner else 'x'}/{target}",
    }[form]
    out = run_filter("dependency", {"HostConfig": {"Links": [f"{ref}:alias"]}}, ns, True)
    for n in out or []:
        assert any(f"/{target}" in c.names for c in n.containers)
    if owner is not None and form != "node":
        assert out is not None and owner in out


@settings(max_examples=100, deadline=None)
@given(
    n_nodes=st.integers(1, 8),
    placements=st.integers(0, 40),
    cpus=st.sampled_from([0, 1]),
    memory=st.sampled_from([0, 1 << 20]),
    health=st.sampled_from([1, 50, 100]),
)
def test_spread_keeps_equal_nodes_balanced(
    n_nodes: int, placements: int, cpus: int, memory: int, health: int
) -> None:
    sched = Scheduler()
    ns = [
        Node(id=f"E{i}", name=f"n{i}", health=health, total_cpus=1000, total_memory=1 << 40)
        for i in range(n_nodes)
    ]
    cfg = {"HostConfig": {"CpuShares": cpus, "Memory": memory}}
    for _ in range(placements):
        chosen = sched.select(cfg, ns)[0]
        ns[ns.index(chosen)] = chosen.with_containers(NodeContainer.pending(cfg))
        counts = [len(n.containers) for n in ns]
        assert max(counts) - min(counts) <= 1


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="ab=!~/*.:-_ ()?x", max_size=12))
def test_parse_never_crashes_unexpectedly(text: str) -> None:
    try:
        req = PlacementRequest.from_config({"Env": [f"constraint:{text}"]})
        exprs = req.constraints
    except ExprError:
        return
    for e in exprs:
        e.match("ab", "x")


SIZES = [(0, 0), (0, 1), (1, 0), (1, 3), (2, 2)]
step = st.tuples(
    st.sampled_from(SIZES),
    st.sampled_from([None, 1, 2]),
    st.integers(0, 9),
    st.sampled_from(["place", "sicken", "heal", "fill", "keep"]),
)


def decision(sched: Scheduler, config: dict[str, Any], ns: list[Node], limit: int | None) -> Any:
    """The ranking as node identities, or the error text."""
    try:
        return [id(n) for n in sched.select(config, ns, limit=limit)]
    except SchedulerError as err:
        return str(err)


@settings(max_examples=150, deadline=None)
@given(
    strategy=st.sampled_from(["spread", "binpack"]),
    ns=nodes(),
    totals=st.lists(
        st.tuples(st.sampled_from([0, 1, 2, 4]), st.sampled_from([0, 2, 8])), min_size=5, max_size=5
    ),
    steps=st.lists(step, min_size=1, max_size=12),
)
def test_kept_rankings_match_the_pipeline(
    strategy: str, ns: list[Node], totals: list[tuple[int, int]], steps: list[Any]
) -> None:
    """Decision after decision, as nodes change, the kept rankings give what the full
    pipeline gives: the same nodes in the same order, or the same error."""
    ns = [
        dataclasses.replace(n, total_cpus=c, total_memory=m)
        for n, (c, m) in zip(ns, totals, strict=False)
    ]
    kept = Scheduler(strategy=strategy)
    full = Scheduler(strategy=strategy, keep_rankings=False)
    for (cpus, memory), limit, pick, change in steps:
        config = {"HostConfig": {"CpuShares": cpus, "Memory": memory}}
        assert decision(kept, config, ns, limit) == decision(full, config, ns, limit)
        i = pick % len(ns)
        if change == "place":
            ns[i] = ns[i].with_containers(NodeContainer.pending(config))
        elif change in ("sicken", "heal"):
            ns[i] = dataclasses.replace(ns[i], health=0 if change == "sicken" else 100)
        elif change == "fill":
            ns[i] = dataclasses.replace(ns[i], labels={**ns[i].labels, "containerslots": "1"})
