"""`--log-format json`: one JSON object per line; `--metrics-addr` and `--log-format` parsing."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from shoal import logs
from shoal.cli import build_cli
from shoal.options import (
    GlobalOptions,
    OptionsError,
    RawManage,
    parse_global,
    parse_manage,
    parse_metrics_addr,
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def record(
    msg: str, *args: object, level: int = logging.INFO, **extra: object
) -> logging.LogRecord:
    rec = logging.LogRecord("shoal.test", level, __file__, 1, msg, args, None)
    for key, val in extra.items():
        setattr(rec, key, val)
    return rec


def test_json_line_has_time_level_msg_and_fields() -> None:
    line = logs.JsonFormatter().format(
        record("Registering %s", "x", fields={"addr": "10.0.0.1:2375", "retries": 3, "ok": True})
    )
    assert "\n" not in line
    data = json.loads(line)
    assert list(data)[:3] == ["time", "level", "msg"]
    assert data["level"] == "info" and data["msg"] == "Registering x"
    assert data["addr"] == "10.0.0.1:2375" and data["retries"] == 3 and data["ok"] is True
    # RFC 3339 with a zone, as logrus writes it.
    assert data["time"][10] == "T" and (data["time"].endswith("Z") or "+" in data["time"][19:]
                                         or "-" in data["time"][19:])


def test_json_levels_use_logrus_names() -> None:
    fmt = logs.JsonFormatter()
    names = {
        level: json.loads(fmt.format(record("m", level=level)))["level"]
        for level in (logging.DEBUG, logging.WARNING, logging.ERROR, logging.CRITICAL, logs.PANIC)
    }
    assert names == {
        logging.DEBUG: "debug", logging.WARNING: "warning", logging.ERROR: "error",
        logging.CRITICAL: "fatal", logs.PANIC: "panic",
    }


def test_json_fields_never_overwrite_the_record_keys_and_odd_values_are_strings() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd!"

    data = json.loads(logs.JsonFormatter().format(
        record("real", fields={"msg": "field", "level": 1, "obj": Odd(), "list": (1, Odd())})
    ))
    assert data["msg"] == "real" and data["level"] == "info"
    assert data["fields.msg"] == "field" and data["fields.level"] == 1
    assert data["obj"] == "odd!" and data["list"] == [1, "odd!"]


def test_json_exception_goes_in_error_and_stays_one_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        rec = record("failed", level=logging.ERROR, exc_info=sys.exc_info())
    line = logs.JsonFormatter().format(rec)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["error"]


def test_setup_json_writes_json_to_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    logs.setup("info", "json")
    logging.getLogger("shoal.x").info("hello", extra={"fields": {"node": "node-1"}})
    logging.getLogger("shoal.x").debug("hidden")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["node"] == "node-1"
    logs.setup("info")  # back to text, replacing the handler rather than adding one
    logging.getLogger("shoal.x").info("plain")
    assert out.getvalue().splitlines()[-1].endswith("msg=plain")
    with pytest.raises(ValueError, match="unsupported log format"):
        logs.setup("info", "xml")


def test_log_format_flag() -> None:
    assert parse_global(debug=False, experimental=False, log_level=None, env={}) == GlobalOptions()
    glob = parse_global(debug=False, experimental=False, log_level=None, env={}, log_format="json")
    assert glob.log_format == "json"
    with pytest.raises(OptionsError, match='unsupported log format "yaml"'):
        parse_global(debug=False, experimental=False, log_level=None, env={}, log_format="yaml")
    result = CliRunner().invoke(build_cli(), ["--log-format", "yaml", "list", "a:1"])
    assert result.exit_code == 1
    assert result.stderr.startswith('shoal: unsupported log format "yaml"')


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", None), ("127.0.0.1:9323", ("127.0.0.1", 9323)), (":9323", ("0.0.0.0", 9323)),
     ("[::1]:0", ("::1", 0)), ("metrics.local:8080", ("metrics.local", 8080))],
)
def test_metrics_addr(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_metrics_addr(text) == expected


@pytest.mark.parametrize("text", ["nohost", "1.2.3.4:http", "1.2.3.4:70000", "a:-1", "a:١٢"])
def test_bad_metrics_addr(text: str) -> None:
    with pytest.raises(OptionsError, match="--metrics-addr should be of the form host:port"):
        parse_metrics_addr(text)


def test_metrics_addr_is_off_unless_given() -> None:
    assert parse_manage(RawManage(args=("nodes://a:1",)), {}).metrics_addr is None
    options = parse_manage(RawManage(args=("nodes://a:1",), metrics_addr="127.0.0.1:9323"), {})
    assert options.metrics_addr == ("127.0.0.1", 9323)


def test_manage_flag_reaches_manage(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from shoal.options import ManageOptions

    calls: list[ManageOptions] = []
    module = types.ModuleType("shoal.manage")
    module.run = lambda options: calls.append(options) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shoal.manage", module)
    result = CliRunner().invoke(
        build_cli(), ["--log-format=json", "manage", "-metrics-addr", "127.0.0.1:9323", "a:1"]
    )
    assert result.exit_code == 0, result.output
    assert calls[0].metrics_addr == ("127.0.0.1", 9323)
    assert isinstance(logging.getLogger().handlers[-1].formatter, logs.JsonFormatter)
