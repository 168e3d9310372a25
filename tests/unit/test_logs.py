"""``serve --log-format``: the flat JSON line, and text by default."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger, LogPublisher

from fastagi_spy.cli import _parser
from fastagi_spy.logs import observer


def _logged(form: str, emit: str) -> str:
    out = io.StringIO()
    publisher = LogPublisher(observer(form, out))
    log = Logger(namespace="fastagi_spy.supervise.flow", observer=publisher)
    if emit == "error":
        log.error("PIN check failed: {error}", error="store down", audit_id=42)
    elif emit == "plain":
        log.info("Live map for {server} rebuilt", server="sandbox")
    else:
        try:
            raise ValueError("boom")
        except ValueError:
            log.failure("background audit step failed", audit_id=7)
    return out.getvalue()


def test_json_is_one_flat_object_per_line_with_the_audit_id() -> None:
    [line] = _logged("json", "error").splitlines()
    obj = json.loads(line)
    assert obj["level"] == "error"
    assert obj["system"] == "fastagi_spy.supervise.flow"
    assert obj["event"] == "PIN check failed: store down"
    assert obj["audit_id"] == 42
    assert obj["time"].endswith("Z") and obj["time"][:2] == "20"
    assert "log_format" not in obj and "error" not in obj  # only the flat fields


def test_json_without_an_attempt_has_no_audit_id() -> None:
    obj = json.loads(_logged("json", "plain"))
    assert obj["event"] == "Live map for sandbox rebuilt" and "audit_id" not in obj


def test_a_traceback_stays_inside_its_one_line() -> None:
    [line] = _logged("json", "failure").splitlines()
    obj = json.loads(line)
    assert obj["level"] == "critical" and obj["audit_id"] == 7
    assert "ValueError: boom" in obj["traceback"]


def test_text_is_twisteds_line_format() -> None:
    text = _logged("text", "plain")
    assert "[fastagi_spy.supervise.flow#info] Live map for sandbox rebuilt" in text
    assert not text.lstrip().startswith("{")


def test_serve_defaults_to_text_and_refuses_other_formats() -> None:
    args = _parser().parse_args(["serve", "--config", "x.toml"])
    assert args.log_format == "text"
    assert _parser().parse_args(["serve", "--config", "x", "--log-format", "json"]
                                ).log_format == "json"
    try:
        _parser().parse_args(["serve", "--config", "x", "--log-format", "xml"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("--log-format xml accepted")
