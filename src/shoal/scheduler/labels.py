"""Swarm's `com.docker.swarm.*` container labels and the env-to-label conversion."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

LABEL_PREFIX = "com.docker.swarm"
ID_LABEL = LABEL_PREFIX + ".id"
CONSTRAINTS_LABEL = LABEL_PREFIX + ".constraints"
AFFINITIES_LABEL = LABEL_PREFIX + ".affinities"
RESCHEDULE_LABEL = LABEL_PREFIX + ".reschedule-policies"
WHITELISTS_LABEL = LABEL_PREFIX + ".whitelists"
TASK_LABEL = LABEL_PREFIX + ".task"

# env key -> label holding that kind of rule, in classic Swarm's order.
RULE_LABELS: Mapping[str, str] = {
    "affinity": AFFINITIES_LABEL,
    "constraint": CONSTRAINTS_LABEL,
    "reschedule": RESCHEDULE_LABEL,
    "whitelist": WHITELISTS_LABEL,
}
RESCHEDULE_OFF = "off"
RESCHEDULE_ON_NODE_FAILURE = "on-node-failure"
_LEGACY_RESOURCE_FIELDS = ("Memory", "MemorySwap", "CpuShares", "Cpuset")


def parse_label_list(value: str | None) -> list[str]:
    """Decode a JSON-list label like Go's json.Unmarshal into []string (bad JSON: empty)."""
    if not value:
        return []
    try:
        decoded = json.loads(value)
    except ValueError:
        return []
    if not isinstance(decoded, list):
        return []
    return [item if isinstance(item, str) else "" for item in decoded]


def go_json_list(items: Sequence[str]) -> str:
    """Encode like Go's json.Marshal([]string): compact, HTML characters escaped."""
    text = json.dumps(list(items), separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def split_env_rules(env: Sequence[str] | None) -> tuple[dict[str, list[str]], list[str]]:
    """Split env entries at the first `:` into swarm rules (by kind) and the remaining env."""
    rules: dict[str, list[str]] = {kind: [] for kind in RULE_LABELS}
    rest: list[str] = []
    for entry in env or ():
        kind, sep, value = entry.partition(":")
        if sep and kind in rules:
            rules[kind].append(value)
        else:
            rest.append(entry)
    return rules, rest


def rules_from_config(config: Mapping[str, Any], kind: str) -> list[str]:
    """Expressions of one kind (`constraint`, ...) from labels, then any env still holding them."""
    labels = config.get("Labels") or {}
    found = parse_label_list(labels.get(RULE_LABELS[kind]))
    env = config.get("Env")
    if env:
        found.extend(split_env_rules(env)[0][kind])
    return found


def reschedule_policies(labels: Mapping[str, str] | None) -> list[str]:
    """The reschedule policies declared in a container's labels."""
    return parse_label_list((labels or {}).get(RESCHEDULE_LABEL))


def validate_reschedule_policies(policies: Sequence[str]) -> None:
    """Raise ValueError with classic Swarm's texts for bad reschedule policies."""
    if len(policies) > 1:
        raise ValueError("too many reschedule policies")
    if policies and policies[0] not in (RESCHEDULE_OFF, RESCHEDULE_ON_NODE_FAILURE):
        raise ValueError(f"invalid reschedule policy: {policies[0]}")


def build_container_config(config: Mapping[str, Any], *, validate: bool = True) -> dict[str, Any]:
    """Classic `BuildContainerConfig`: a copy with env rules moved into swarm labels.

    Env entries whose key (before the first `:`) is affinity/constraint/reschedule/
    whitelist are removed from `Env` and appended to the JSON list already in the
    matching label. Non-zero legacy top-level resource fields override HostConfig.
    With `validate`, bad reschedule policies raise ValueError (the create route's 500).
    """
    out: dict[str, Any] = copy.deepcopy(dict(config))
    labels: dict[str, str] = dict(out.get("Labels") or {})
    rules, rest = split_env_rules(out.get("Env"))
    for kind, label in RULE_LABELS.items():
        if not rules[kind]:
            continue
        combined = parse_label_list(labels.get(label)) + rules[kind]
        labels[label] = go_json_list(combined)
    if out.get("Env") is not None:
        out["Env"] = rest
    out["Labels"] = labels
    host_config: dict[str, Any] = dict(out.get("HostConfig") or {})
    for name in _LEGACY_RESOURCE_FIELDS:
        value = out.get(name)
        if value:
            host_config[name] = value
    out["HostConfig"] = host_config
    if validate:
        validate_reschedule_policies(reschedule_policies(labels))
    return out


def build_scheduling_config(
    buildargs: Mapping[str, str | None] | None,
    *,
    labels: Mapping[str, str] | None = None,
    cpus: int = 0,
    memory: int = 0,
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """Scheduling requirements of a `POST /build` and the build args left for the engine.

    The CLI sends `--build-arg constraint:node==node-1` as key `constraint:node`, value
    `=node-1`; joined as `key=value` it is the env form `constraint:node==node-1`.
    `cpus` is the build's `cpushares` (a CPU count) and `memory` its reservation.
    """
    env: list[str] = []
    remaining: dict[str, str | None] = {}
    for key, value in (buildargs or {}).items():
        kind, sep, _ = key.partition(":")
        if value is not None and sep and kind in RULE_LABELS:
            env.append(f"{key}={value}")
        else:
            remaining[key] = value
    config = build_container_config(
        {
            "Env": env,
            "Labels": dict(labels or {}),
            "HostConfig": {"CpuShares": cpus, "Memory": memory},
        },
        validate=False,
    )
    return config, remaining
