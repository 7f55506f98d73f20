from __future__ import annotations

import logging

import pytest

from agent import logs


def _emit(capsys: pytest.CaptureFixture[str], msg: str, *args: object) -> str:
    logging.getLogger("drivers.bus").warning(msg, *args)
    return capsys.readouterr().err


def test_secrets_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("info")
    err = _emit(capsys, "connect failed: password=%s token: %s", "hunter2", "abc123")
    assert "hunter2" not in err and "abc123" not in err
    assert "password=***" in err


def test_journal_prefix_and_module_levels(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    logs.setup("warning", {"drivers": "debug"})
    logging.getLogger("drivers.bus").debug("polled")
    logging.getLogger("vision").info("not shown")
    logging.getLogger("agent").error("bad\nsecond line")
    err = capsys.readouterr().err.splitlines()
    assert err == ["<7>drivers.bus DEBUG: polled", "<3>agent ERROR: bad", "<3>second line"]


def test_redact_url() -> None:
    assert logs.redact_url("rtsp://u:p@cam/x") == "rtsp://u:***@cam/x"
    assert logs.redact_url("rtsp://cam/x") == "rtsp://cam/x"
    assert logs.redact_url("/srv/clip.mp4") == "/srv/clip.mp4"
