"""Structured JSON logs: one JSON object per record, with the extra fields."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from orasi_common.telemetry.logs import JsonFormatter, configure_logging


def _record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("orasi.agent.test")
    return logger.makeRecord(
        "orasi.agent.test", logging.WARNING, __file__, 10, "Queue is %s.", ("full",), None, extra=extra
    )


def test_one_json_object_with_fields() -> None:
    line = JsonFormatter().format(_record(items=12, batch_id="abc", path=None))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert entry["logger"] == "orasi.agent.test"
    assert entry["msg"] == "Queue is full."
    assert entry["items"] == 12
    assert entry["batch_id"] == "abc"
    assert entry["path"] is None
    assert entry["ts"].endswith("Z") and "T" in entry["ts"]
    for standard in ("args", "msecs", "levelno", "pathname", "taskName", "message"):
        assert standard not in entry
    assert list(entry)[-1] == "msg"  # fields first, then the sentence


def test_values_json_cannot_encode_are_strings() -> None:
    entry = json.loads(JsonFormatter().format(_record(error=ValueError("boom"), when=1.5)))
    assert entry["error"] == "boom"
    assert entry["when"] == 1.5


def test_exceptions_are_included() -> None:
    try:
        raise RuntimeError("broken")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "Failed.", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: broken" in entry["error"]
    assert entry["msg"] == "Failed."


def test_configure_logging_writes_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("warning")
        logging.getLogger("orasi.test").info("Not shown.")
        logging.getLogger("orasi.test").warning("Shown.", extra={"n": 1})
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert [json.loads(line)["msg"] for line in lines] == ["Shown."]
    assert json.loads(lines[0])["n"] == 1
