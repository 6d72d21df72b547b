"""Request bodies decoded and type-checked as dockerd 20.10 does.

The expected messages were taken from a dockerd 20.10.24 given the same bodies; the
integration tests (tests/integration/test_hardening_input.py) compare with a live engine.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.api.gotypes import CONTAINER_CONFIG, GoType
from shoal.api.validation import (
    CONTAINER_CREATE,
    CONTAINER_UPDATE_BODY,
    EXEC_CREATE,
    NETWORK_CREATE_BODY,
    VOLUME_CREATE_BODY,
    BodyError,
    BodyKind,
    build_query_object,
    check_content_type,
    decode,
    int64_or_zero,
    media_type,
    parse_body,
    quote_char,
)

JSON = "application/json"
HC = "json: cannot unmarshal {} into Go struct field HostConfig.HostConfig.{} of type {}"
TOP = "json: cannot unmarshal {} into Go struct field ContainerConfigWrapper.{} of type {}"


def refused(kind: BodyKind, raw: bytes, content_type: str | None = JSON) -> str:
    with pytest.raises(BodyError) as caught:
        parse_body(kind, raw, content_type, bool(raw))
    assert caught.value.status == 400
    return str(caught.value.message)


CREATE_CASES = [
    ('{"Image":"b","HostConfig":{"CpuShares":"abc"}}', HC.format("string", "CpuShares", "int64")),
    ('{"Image":"b","HostConfig":{"CpuShares":"10"}}', HC.format("string", "CpuShares", "int64")),
    ('{"Image":"b","HostConfig":{"Binds":5}}', HC.format("number", "Binds", "[]string")),
    ('{"Image":"b","HostConfig":{"Memory":NaN}}',
     "invalid character 'N' looking for beginning of value"),
    ('{"Image":"b","HostConfig":{"Links":[5]}}', HC.format("number", "Links", "string")),
    ('{"Image":"b","HostConfig":{"Memory":1e23}}', HC.format("number 1e23", "Memory", "int64")),
    ('{"Image":"b","HostConfig":{"Memory":1.0}}', HC.format("number 1.0", "Memory", "int64")),
    ('{"Image":"b","HostConfig":{"Memory":1e3}}', HC.format("number 1e3", "Memory", "int64")),
    ('{"Image":"b","HostConfig":{"Memory":-1E2}}', HC.format("number -1E2", "Memory", "int64")),
    ('{"Image":"b","HostConfig":{"Memory":99999999999999999999}}',
     HC.format("number 99999999999999999999", "Memory", "int64")),
    ('{"Image":"b","HostConfig":{"BlkioWeight":-1}}',
     HC.format("number -1", "BlkioWeight", "uint16")),
    ('{"Image":"b","HostConfig":{"BlkioWeight":70000}}',
     HC.format("number 70000", "BlkioWeight", "uint16")),
    ('{"Image":"b","HostConfig":{"ConsoleSize":[1,-1]}}',
     HC.format("number -1", "ConsoleSize", "uint")),
    ('{"Image":"b","HostConfig":{"OomScoreAdj":1e99}}',
     HC.format("number 1e99", "OomScoreAdj", "int")),
    ('{"Image":"b","HostConfig":{"NetworkMode":5}}',
     HC.format("number", "NetworkMode", "container.NetworkMode")),
    ('{"Image":"b","Memory":"x"}', TOP.format("string", "Memory", "int64")),
    ('{"Image":5}', TOP.format("number", "Image", "string")),
    ('{"image":5}', TOP.format("number", "Image", "string")),
    ('{"Image":"b","hostconfig":{"cpushares":"x"}}', HC.format("string", "CpuShares", "int64")),
    ('{"Image":"b","Env":[1]}', TOP.format("number", "Env", "string")),
    ('{"Image":"b","Env":"a=b"}', TOP.format("string", "Env", "[]string")),
    ('{"Image":"b","Cmd":5}', TOP.format("number", "Cmd", "string")),
    ('{"Image":"b","Cmd":[5]}', TOP.format("array", "Cmd", "string")),
    ('{"Image":"b","Cmd":{}}', TOP.format("object", "Cmd", "string")),
    # A custom decoder's failure (Cmd) aborts and wins over an earlier type error.
    ('{"Image":"b","HostConfig":{"Memory":"x"},"Cmd":[5]}', TOP.format("array", "Cmd", "string")),
    # Otherwise the first type error in document order wins.
    ('{"HostConfig":{"Memory":"x"},"Image":5}', HC.format("string", "Memory", "int64")),
    ('{"Image":"b","Labels":{"a":5}}', TOP.format("number", "Labels", "string")),
    ('{"Image":"b","Labels":[]}', TOP.format("array", "Labels", "map[string]string")),
    ('{"Image":"b","HostConfig":5}', TOP.format("number", "HostConfig", "container.HostConfig")),
    ('{"Image":"b","HostConfig":[]}', TOP.format("array", "HostConfig", "container.HostConfig")),
    ('{"Image":"b","ExposedPorts":{"80/tcp":5}}',
     TOP.format("number", "ExposedPorts", "struct {}")),
    ('{"Image":"b","ExposedPorts":[]}', TOP.format("array", "ExposedPorts", "nat.PortSet")),
    ('{"Image":"b","Volumes":{"/a":1}}', TOP.format("number", "Volumes", "struct {}")),
    ('{"Image":"b","StopTimeout":"1"}', TOP.format("string", "StopTimeout", "int")),
    ('{"Image":"b","Healthcheck":{"Interval":"1s"}}',
     "json: cannot unmarshal string into Go struct field HealthConfig.Healthcheck.Interval "
     "of type time.Duration"),
    ('{"Image":"b","HostConfig":{"Ulimits":[{"Hard":"1"}]}}',
     "json: cannot unmarshal string into Go struct field Ulimit.HostConfig.Ulimits.Hard "
     "of type int64"),
    ('{"Image":"b","HostConfig":{"Mounts":[{"TmpfsOptions":{"Mode":"x"}}]}}',
     "json: cannot unmarshal string into Go struct field "
     "TmpfsOptions.HostConfig.Mounts.TmpfsOptions.Mode of type fs.FileMode"),
    ('{"Image":"b","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":80}]}}}',
     "json: cannot unmarshal number into Go struct field "
     "PortBinding.HostConfig.PortBindings.HostPort of type string"),
    ('{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"n":{"Aliases":5}}}}',
     "json: cannot unmarshal number into Go struct field "
     "EndpointSettings.NetworkingConfig.EndpointsConfig.Aliases of type []string"),
    ("[]", "json: cannot unmarshal array into Go value of type runconfig.ContainerConfigWrapper"),
    ("5", "json: cannot unmarshal number into Go value of type runconfig.ContainerConfigWrapper"),
    ("null", "Config cannot be empty in order to create a container"),
    ("", "EOF"),
    ("  \n", "EOF"),
    ('{"Image":"b"', "unexpected EOF"),
]


@pytest.mark.parametrize(("body", "message"), CREATE_CASES)
def test_create_bodies_refused_with_the_engines_message(body: str, message: str) -> None:
    assert refused(CONTAINER_CREATE, body.encode()) == message


SYNTAX_CASES = [
    (b'{"a":-x}', "invalid character 'x' in numeric literal"),
    (b'{"a":-Infinity}', "invalid character 'I' in numeric literal"),
    (b'{"a":Infinity}', "invalid character 'I' looking for beginning of value"),
    (b'{"a":tru}', "invalid character '}' in literal true (expecting 'e')"),
    (b'{"a":nul', "unexpected EOF"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    (b'{"a":[1,{"b":1}] 2}', "invalid character '2' after object key:value pair"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
    (b'{"a":"\\x"}', "invalid character 'x' in string escape code"),
    (b'{"a":"\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"),
    (b'{"a":1.x}', "invalid character 'x' after decimal point in numeric literal"),
    (b'{"a":1ex}', "invalid character 'x' in exponent of numeric literal"),
    (b'{"a":"\x01"}', "invalid character '\\x01' in string literal"),
    (b'{"a":"x', "unexpected EOF"),
    (b"\xff", "invalid character '\xff' looking for beginning of value"),
    ('{"Image":"b"}'.encode("utf-16"), "invalid character 'ÿ' looking for beginning of value"),
    ('{"Image":"b"}'.encode("utf-16-le"),
     "invalid character '\\x00' looking for beginning of object key string"),
    ('\ufeff{"Image":"b"}'.encode(), "invalid character 'ï' looking for beginning of value"),
    (b"[" * 100_000, "invalid character '[' exceeded max depth"),
]


@pytest.mark.parametrize(("raw", "message"), SYNTAX_CASES)
def test_syntax_errors_read_like_gos_scanner(raw: bytes, message: str) -> None:
    with pytest.raises(BodyError) as caught:
        decode(raw)
    assert caught.value.message == message


def test_trailing_data_after_the_value_is_ignored_like_json_decoder() -> None:
    assert decode(b'{"Image":"b"} x') == {"Image": "b"}


def test_invalid_utf8_inside_strings_becomes_the_replacement_character() -> None:
    assert decode(b'{"Image":"b\xff"}') == {"Image": "b\ufffd"}


def test_other_routes_use_their_own_go_types_and_eof_texts() -> None:
    assert refused(VOLUME_CREATE_BODY, b'{"Name":1.5}') == (
        "json: cannot unmarshal number into Go struct field VolumeCreateBody.Name of type string"
    )
    assert refused(VOLUME_CREATE_BODY, b'{"Name":"v","DriverOpts":[1]}') == (
        "json: cannot unmarshal array into Go struct field VolumeCreateBody.DriverOpts "
        "of type map[string]string"
    )
    assert refused(VOLUME_CREATE_BODY, b"") == "got EOF while reading request body"
    assert refused(NETWORK_CREATE_BODY, b'{"Name":"n","Internal":"yes"}') == (
        "json: cannot unmarshal string into Go struct field NetworkCreateRequest.Internal "
        "of type bool"
    )
    assert refused(NETWORK_CREATE_BODY, b'{"Name":"n","IPAM":{"Config":[{"Subnet":5}]}}') == (
        "json: cannot unmarshal number into Go struct field IPAMConfig.IPAM.Config.Subnet "
        "of type string"
    )
    assert refused(NETWORK_CREATE_BODY, b"[]") == (
        "json: cannot unmarshal array into Go value of type types.NetworkCreateRequest"
    )
    assert refused(EXEC_CREATE, b'{"Cmd":"ls"}') == (
        "json: cannot unmarshal string into Go struct field ExecConfig.Cmd of type []string"
    )
    assert refused(EXEC_CREATE, b'{"Cmd":["ls"],"Tty":1}') == (
        "json: cannot unmarshal number into Go struct field ExecConfig.Tty of type bool"
    )
    assert refused(EXEC_CREATE, b"") == "got EOF while reading request body"
    assert refused(CONTAINER_UPDATE_BODY, b'{"CpuShares":"x"}') == (
        "json: cannot unmarshal string into Go struct field UpdateConfig.CpuShares of type int64"
    )
    assert refused(CONTAINER_UPDATE_BODY, b'{"RestartPolicy":{"MaximumRetryCount":"x"}}') == (
        "json: cannot unmarshal string into Go struct field "
        "RestartPolicy.RestartPolicy.MaximumRetryCount of type int"
    )


def test_null_is_an_empty_body_where_the_engine_takes_it() -> None:
    for kind in (EXEC_CREATE, NETWORK_CREATE_BODY, VOLUME_CREATE_BODY, CONTAINER_UPDATE_BODY):
        assert parse_body(kind, b"null", JSON, True) == {}


def test_good_bodies_pass_and_nulls_in_string_lists_and_maps_read_as_empty_strings() -> None:
    body = parse_body(
        CONTAINER_CREATE,
        b'{"Image":"b","Cmd":"echo hi","Env":["A=1",null],"Labels":{"a":null},"HostConfig":'
        b'{"Memory":-0,"CpuShares":9223372036854775807,"Binds":null,"Init":true},'
        b'"ExposedPorts":{"80/tcp":{}},"Unknown":[1,{"x":NaN_NOT}]}'.replace(b"NaN_NOT", b"1"),
        JSON,
        True,
    )
    assert body["Env"] == ["A=1", ""]
    assert body["Labels"] == {"a": ""}
    assert body["HostConfig"]["CpuShares"] == 2**63 - 1


def test_int64_bounds_are_gos() -> None:
    for value in (2**63, -(2**63) - 1):
        assert "number" in refused(
            CONTAINER_CREATE, json.dumps({"HostConfig": {"Memory": value}}).encode()
        )
    parse_body(CONTAINER_CREATE, json.dumps({"HostConfig": {"Memory": -(2**63)}}).encode(),
               JSON, True)


@pytest.mark.parametrize(
    ("content_type", "has_body", "ok"),
    [
        ("application/json", True, True),
        ("application/json; charset=utf-8", True, True),
        ("Application/JSON", True, True),
        ("application/json;", True, True),
        (None, False, True),
        ("", False, True),
        (None, True, False),
        ("text/plain", True, False),
        ("text/plain", False, False),
        ("application/json;;bad", True, False),
        ("application/json; charset", True, False),
        ("application", True, False),
        ("application/json-seq", True, False),
    ],
)
def test_content_type_is_checked_like_check_for_json(
    content_type: str | None, has_body: bool, ok: bool
) -> None:
    if ok:
        check_content_type(content_type, has_body)
        return
    with pytest.raises(BodyError) as caught:
        check_content_type(content_type, has_body)
    assert caught.value.message == (
        f"Content-Type specified ({content_type or ''}) must be 'application/json'"
    )


def test_media_type() -> None:
    assert media_type('application/json; a="x;y"') == "application/json"
    assert media_type("application/json; a=") is None


def test_quote_char_matches_go() -> None:
    assert quote_char("'") == "'\\''"
    assert quote_char('"') == "'\"'"
    assert quote_char("\n") == "'\\n'"
    assert quote_char("\x7f") == "'\\x7f'"
    assert quote_char("é") == "'Ã'"  # the first byte of its UTF-8 form


# --- properties -------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30,
)

FIELD_NAMES = sorted(
    {*CONTAINER_CONFIG.fields, *CONTAINER_CONFIG.fields["HostConfig"].fields}
)


def bodies_with_known_fields() -> st.SearchStrategy[Any]:
    """Objects whose keys are mostly real field names at both levels, values of any type."""
    keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=6)
    leaf = st.dictionaries(keys, json_values, max_size=5)
    return st.dictionaries(keys, json_values | leaf, max_size=6)


def conforms(value: Any, t: GoType) -> bool:
    """An independent statement of "Go would decode this": used to check the checker."""
    if value is None or t.kind == "any":
        return True
    if t.kind == "string":
        return isinstance(value, str)
    if t.kind == "bool":
        return isinstance(value, bool)
    if t.kind in ("int", "uint"):
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        low = -(2 ** (t.bits - 1)) if t.kind == "int" else 0
        high = 2 ** (t.bits - 1) if t.kind == "int" else 2**t.bits
        return bool(low <= value < high)
    if t.kind == "strslice":
        return isinstance(value, str) or (
            isinstance(value, list) and all(v is None or isinstance(v, str) for v in value)
        )
    if t.kind in ("slice", "array"):
        assert t.elem is not None
        return isinstance(value, list) and all(conforms(v, t.elem) for v in value)
    if t.kind == "map":
        assert t.elem is not None
        return isinstance(value, dict) and all(conforms(v, t.elem) for v in value.values())
    if t.kind == "struct":
        if not isinstance(value, dict):
            return False
        folded = {k.lower(): ft for k, ft in t.fields.items()}
        return all(
            conforms(v, t.fields.get(k) or folded.get(k.lower(), GoType("x", "any")))
            for k, v in value.items()
        )
    raise AssertionError(t.kind)


@settings(max_examples=400, deadline=None)
@given(bodies_with_known_fields())
def test_a_body_is_accepted_exactly_when_it_conforms(body: Any) -> None:
    raw = json.dumps(body).encode()
    if conforms(body, CONTAINER_CONFIG):
        parsed = parse_body(CONTAINER_CREATE, raw, JSON, True)
        assert isinstance(parsed, dict)
    else:
        message = refused(CONTAINER_CREATE, raw)
        assert message.startswith("json: cannot unmarshal ")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_give_a_dict_or_a_400(raw: bytes) -> None:
    for kind in (CONTAINER_CREATE, EXEC_CREATE, NETWORK_CREATE_BODY, VOLUME_CREATE_BODY):
        try:
            assert isinstance(parse_body(kind, raw, JSON, bool(raw)), dict)
        except BodyError as exc:
            assert exc.status == 400 and exc.message


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_decode_agrees_with_python_on_valid_json(value: Any) -> None:
    decoded = decode(json.dumps(value).encode())
    assert decoded == value
    # Floats keep their literal for messages and still encode as plain numbers.
    again = json.loads(json.dumps(decoded))
    assert again == value or (isinstance(value, float) and math.isclose(again, value))


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("buildargs", "[1]", "error reading build args: json: cannot unmarshal array into Go "
         "value of type map[string]*string"),
        ("buildargs", '{"a":1}',
         "error reading build args: json: cannot unmarshal number into Go value of type string"),
        ("buildargs", "{x", "error reading build args: invalid character 'x' looking for "
         "beginning of object key string"),
        ("labels", "[1]", "error reading labels: json: cannot unmarshal array into Go value "
         "of type map[string]string"),
        ("labels", '{"a":1}',
         "error reading labels: json: cannot unmarshal number into Go value of type string"),
    ],
)
def test_build_query_objects_are_refused_like_the_engine(name: str, raw: str, message: str) -> None:
    with pytest.raises(BodyError) as caught:
        build_query_object(name, raw)
    assert caught.value.status == 400
    assert caught.value.message == message


def test_build_args_keep_null_values_and_labels_read_null_as_empty() -> None:
    assert build_query_object("buildargs", '{"a":null,"b":"1"}') == {"a": None, "b": "1"}
    assert build_query_object("labels", '{"a":null}') == {"a": ""}
    assert build_query_object("labels", "") == {}
    assert build_query_object("labels", "null") == {}


@pytest.mark.parametrize(
    ("raw", "value"),
    [(None, 0), ("", 0), ("12", 12), ("-3", -3), ("+4", 4), ("abc", 0), ("1.5", 0),
     ("1e3", 0), (" 1", 0), ("1_000", 0), ("\u0661", 0), (str(2**63), 0),
     (str(-(2**63)), -(2**63))],
)
def test_int64_or_zero(raw: str | None, value: int) -> None:
    assert int64_or_zero(raw) == value


def test_huge_integer_literals_are_refused_with_their_literal() -> None:
    digits = "9" * 5000
    message = refused(CONTAINER_CREATE, f'{{"HostConfig":{{"Memory":{digits}}}}}'.encode())
    assert message == HC.format(f"number {digits}", "Memory", "int64")
    assert decode(b'{"X":' + b"1" * 3000 + b"}") == {"X": int("1" * 3000)}
