"""The gb26875 section of the site config, and doctor's check of the centre."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.commands import doctor
from agent.commands.doctor import Context, Outcome
from agent.gb26875.probe import check_centre
from agent.siteconfig.loader import ConfigError, load_site
from firmware_mocks.broker import free_port
from firmware_mocks.centre import MockCentre
from tests.gb26875.support import SITE, make_site


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(text)
    return p


def _site_text(**kw: object) -> str:
    return SITE.format(port=9000, timeout=1, heartbeat=30, **kw)


def test_components_must_name_devices_and_addresses_must_differ(tmp_path: Path) -> None:
    text = _site_text().replace(
        '    kitchen-smoke: {address: "10/2"}',
        '    kitchen-smok: {address: "10/2"}\n    store-smoke: {address: "1/1"}',
    )
    with pytest.raises(ConfigError) as e:
        load_site(_write(tmp_path, text))
    msg = str(e.value)
    assert "gb26875.components.kitchen-smok" in msg and "no device or camera" in msg
    # store-smoke given leakage's default address 1/1 (bus 1, Modbus id 1)
    assert "gb26875.components.store-smoke" in msg
    assert "both have component address 1/1" in msg


def test_addresses_out_of_range_are_refused_with_the_key(tmp_path: Path) -> None:
    text = _site_text().replace("source_address: 889", "source_address: 281474976710656")
    with pytest.raises(ConfigError) as e:
        load_site(_write(tmp_path, text))
    assert "gb26875.source_address" in str(e.value)
    text = _site_text().replace('{address: "10/2"}', '{address: "70000/2"}')
    with pytest.raises(ConfigError) as e:
        load_site(_write(tmp_path, text))
    assert "at most 65535" in str(e.value)


def test_check_config_lists_the_addresses_the_centre_must_know(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    path = _write(tmp_path, _site_text())
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "gb26875: 127.0.0.1:9000, this device 889 -> centre 88888" in out
    assert "kitchen-smoke          10/2        type 42" in out
    assert "leakage                1/1         type 17" in out
    assert "decisions go to the GB/T 26875.3 centre only" in out


async def test_doctor_centre_pass_deny_silence_and_wrong_port(tmp_path: Path) -> None:
    centre = MockCentre()
    await centre.start()
    try:
        ctx = Context(tmp_path / "site.yaml", timeout_s=1.0, site=make_site(tmp_path, centre.port))
        (r,) = await check_centre(ctx)
        assert r.outcome is Outcome.PASS and "confirmed a heartbeat from address 889" in r.detail
        centre.deny_next = 1
        (r,) = await check_centre(ctx)
        assert r.outcome is Outcome.FAIL and "denied" in r.detail and "source_address" in r.fix
        centre.silent_next = 1
        (r,) = await check_centre(ctx)
        assert r.outcome is Outcome.FAIL and "no confirm within 1 s" in r.detail
    finally:
        await centre.stop()

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ctx = Context(tmp_path / "site.yaml", timeout_s=1.0, site=make_site(tmp_path, port))
        (r,) = await check_centre(ctx)
        assert r.outcome is Outcome.FAIL and "not GB/T 26875.3" in r.detail
    finally:
        server.close()
    ctx = Context(tmp_path / "site.yaml", timeout_s=1.0, site=make_site(tmp_path, free_port()))
    (r,) = await check_centre(ctx)
    assert r.outcome is Outcome.FAIL and "cannot connect" in r.detail


def test_doctor_runs_the_centre_check() -> None:
    assert "centre" in [n for n, _ in doctor.CHECKS]


def test_storage_check_counts_both_outboxes(tmp_path: Path) -> None:
    import os

    (tmp_path / "state").mkdir()
    vfs = os.statvfs(tmp_path / "state")
    free_mb = vfs.f_bavail * vfs.f_frsize / 2**20
    cap = int(free_mb * 0.6)  # one outbox fits, two do not
    if not 1 <= cap <= 65536:
        pytest.skip("free disk space outside what outbox_max_mb can express")
    text = _site_text().replace(
        "storage: {state_dir: state}",
        f"storage: {{state_dir: state, outbox_max_mb: {cap}}}\nuplink: {{host: 127.0.0.1}}",
    )
    site = load_site(_write(tmp_path, text))
    ctx = Context(tmp_path / "site.yaml", site=site)
    (r,) = doctor.check_storage(ctx)
    assert r.outcome is Outcome.FAIL and f"may grow to {2 * cap} MB" in r.detail
    text = text.replace("\nuplink: {host: 127.0.0.1}", "")
    (r,) = doctor.check_storage(
        Context(tmp_path / "site.yaml", site=load_site(_write(tmp_path, text)))
    )
    assert r.outcome is Outcome.PASS
