"""Env-to-label conversion, reschedule policies, build-arg rules and resource helpers."""

from __future__ import annotations

import json

import pytest

from shoal.scheduler import (
    build_container_config,
    build_scheduling_config,
    container_cpus,
    engine_cpu_shares,
    requested_resources,
    with_overcommit,
)
from shoal.scheduler.labels import (
    AFFINITIES_LABEL,
    CONSTRAINTS_LABEL,
    RESCHEDULE_LABEL,
    WHITELISTS_LABEL,
    go_json_list,
    parse_label_list,
    reschedule_policies,
)
from shoal.scheduler.node import NodeContainer


def test_env_rules_move_to_labels() -> None:
    cfg = {
        "Image": "busybox",
        "Env": [
            "constraint:node==n1",
            "A=b:c",
            "affinity:image==redis",
            "reschedule:on-node-failure",
            "whitelist:node==a|b",
            "constraint:region==eu",
            "plain",
        ],
        "Labels": {CONSTRAINTS_LABEL: '["storage==ssd"]', "keep": "me"},
    }
    out = build_container_config(cfg)
    assert out["Env"] == ["A=b:c", "plain"]
    labels = out["Labels"]
    assert labels[CONSTRAINTS_LABEL] == '["storage==ssd","node==n1","region==eu"]'
    assert labels[AFFINITIES_LABEL] == '["image==redis"]'
    assert labels[RESCHEDULE_LABEL] == '["on-node-failure"]'
    assert labels[WHITELISTS_LABEL] == '["node==a|b"]'
    assert labels["keep"] == "me"
    # the input is untouched
    assert cfg["Env"][0] == "constraint:node==n1"


def test_no_rules_leaves_labels_alone() -> None:
    out = build_container_config({"Env": ["X=1"]})
    assert out["Env"] == ["X=1"]
    assert out["Labels"] == {}


def test_env_split_at_first_colon_only() -> None:
    out = build_container_config({"Env": ["constraint:node==a:b", "Constraint:x==y"]})
    assert json.loads(out["Labels"][CONSTRAINTS_LABEL]) == ["node==a:b"]
    assert out["Env"] == ["Constraint:x==y"]


def test_go_json_escaping() -> None:
    assert go_json_list(["a<b>&c", "é"]) == '["a\\u003cb\\u003e\\u0026c","é"]'
    assert parse_label_list("not json") == []
    assert parse_label_list('"str"') == []
    assert parse_label_list('["a", 1]') == ["a", ""]


@pytest.mark.parametrize(
    ("env", "labels", "error"),
    [
        (["reschedule:on-node-failure", "reschedule:off"], {}, "too many reschedule policies"),
        (
            ["reschedule:off"],
            {RESCHEDULE_LABEL: '["on-node-failure"]'},
            "too many reschedule policies",
        ),
        (["reschedule:always"], {}, "invalid reschedule policy: always"),
    ],
)
def test_reschedule_validation(env: list[str], labels: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError) as info:
        build_container_config({"Env": env, "Labels": labels})
    assert str(info.value) == error
    # cached containers are converted without validation
    build_container_config({"Env": env, "Labels": labels}, validate=False)


def test_valid_reschedule_policies() -> None:
    for policy in ("off", "on-node-failure"):
        out = build_container_config({"Env": [f"reschedule:{policy}"]})
        assert reschedule_policies(out["Labels"]) == [policy]
    assert reschedule_policies({}) == []
    assert reschedule_policies(None) == []


def test_legacy_resource_fields_override_host_config() -> None:
    out = build_container_config(
        {"Memory": 10, "CpuShares": 0, "HostConfig": {"Memory": 5, "CpuShares": 2}}
    )
    assert out["HostConfig"]["Memory"] == 10
    assert out["HostConfig"]["CpuShares"] == 2


def test_build_args_rules() -> None:
    config, rest = build_scheduling_config(
        {"constraint:node": "=node-1", "affinity:image": "=~redis", "HTTP_PROXY": "x", "N": None},
        labels={"com.docker.swarm.constraints": '["storage==ssd"]'},
        cpus=1,
        memory=64,
    )
    assert rest == {"HTTP_PROXY": "x", "N": None}
    assert json.loads(config["Labels"][CONSTRAINTS_LABEL]) == ["storage==ssd", "node==node-1"]
    assert json.loads(config["Labels"][AFFINITIES_LABEL]) == ["image==~redis"]
    assert requested_resources(config) == (1, 64)


def test_resource_helpers() -> None:
    assert with_overcommit(2, 0.05) == 2
    assert with_overcommit(100, 0.05) == 105
    assert with_overcommit(100, 0.0) == 100
    assert engine_cpu_shares(1, 2) == 512
    assert engine_cpu_shares(1, 3) == 342
    assert container_cpus({"CpuShares": 1}, 2) == 0
    assert container_cpus({"CpuShares": 512}, 2) == 1
    assert container_cpus({"CpuShares": 1024}, 4) == 4
    assert container_cpus({"NanoCpus": 1_200_000_000}, 4) == 2


def test_node_container_from_inspect() -> None:
    info = {
        "Id": "abc",
        "Name": "/web",
        "State": {"Status": "exited"},
        "Config": {
            "Image": "nginx",
            "Labels": {"com.docker.swarm.id": "s1"},
            "ExposedPorts": {"80/tcp": {}},
        },
        "HostConfig": {"CpuShares": 1024, "Memory": 99, "NetworkMode": "host"},
        "NetworkSettings": {"Ports": {"80/tcp": None}},
    }
    c = NodeContainer.from_inspect(info, engine_cpus=2)
    assert (c.id, list(c.names), c.state, c.image, c.cpus, c.memory, c.swarm_id) == (
        "abc",
        ["/web"],
        "exited",
        "nginx",
        2,
        99,
        "s1",
    )
    assert list(c.config_exposed_ports) == ["80/tcp"]
