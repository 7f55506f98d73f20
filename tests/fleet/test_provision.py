"""`firegate provision`: a sheet of schools and a template become one checked site
config per gateway, credentials the broker accepts, and a commissioning sheet."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands.provision import mosquitto_hash, parse_broker, provision
from agent.siteconfig import load_site, loader
from firmware_mocks.broker import BrokerError, Mosquitto, find_mosquitto

ROOT = Path(__file__).resolve().parents[2]

TEMPLATE = """\
# the province's standard school: one RS-485 line, a camera over the kitchen
version: 1
site: {site_id: template, gateway_id: gw-1}
zones:
  - id: kitchen
    name: School kitchen
    policy: {coincidence_window_s: 60, persistence_s: 45, ceiling_s: 90}
  - id: hall
buses:
  - name: rs485-1
    type: rtu
    port: /dev/firegate-rs485-1
    baudrate: 9600
    devices:
      - {name: kitchen-smoke, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen,
         label: "kitchen ceiling, {school_name}"}
      - {name: hall-smoke, profile: calectro-ug3-o-mb-r, device_id: 4, zone: hall}
cameras:
  - name: cam-kitchen
    zone: kitchen
    source: rtsp://viewer:secret@cam-{site_id}.school.lan/stream2
uplink:
  host: placeholder
  mqtt_version: 5
  keepalive_s: 20
storage: {state_dir: /var/lib/firegate}
"""

SHEET = """\
site_id,gateway_id,school_name,zones,broker,credentials_file
school-0001,gw-1,Riverside Primary,kitchen=Main kitchen;hall,mqtt.centre.example,
school-0001,gw-2,Riverside Primary,kitchen;hall,mqtt.centre.example:1884,
school-0002,gw-1,"Hill School, ""east"" wing
(annex)",kitchen;hall,mqtt.centre.example,secret-pw
school 0003,gw-1,Bad Name School,kitchen;hall,mqtt.centre.example,
school-0004,gw-1,Lost Hall School,kitchen,mqtt.centre.example,
school-0005,gw-1,Bad Port School,kitchen;hall,mqtt.centre.example:0,
school-0001,gw-1,Riverside again,kitchen;hall,mqtt.centre.example,
school-0006,gw-1,Short row,kitchen;hall
"""


def write(tmp_path: Path, sheet: str = SHEET, template: str = TEMPLATE) -> tuple[Path, Path]:
    s, t = tmp_path / "sites.csv", tmp_path / "site-template.yaml"
    s.write_text(sheet)
    t.write_text(template)
    return s, t


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_one_checked_config_per_gateway_and_broken_rows_by_line(tmp_path: Path) -> None:
    sites, template = write(tmp_path)
    out = tmp_path / "out"
    r = cli("provision", "--sites", str(sites), "--template", str(template), "--out", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    err = r.stderr
    assert "5 broken rows" in err
    # each broken row by its line (the quoted cell of line 4 spans two lines)
    assert f"{sites}:6: site_id 'school 0003'" in err
    assert f"{sites}:7: site school-0004 gateway gw-1: " in err
    assert "buses[0].devices[1].zone: unknown zone 'hall'" in err
    assert "site.yaml.broken:" in err  # the line cited is in the file kept beside
    assert f"{sites}:8: broker 'mqtt.centre.example:0': port '0' is not 1-65535" in err
    assert f"{sites}:9: site school-0001 gateway gw-1 is already on line 2" in err
    assert f"{sites}:10: 4 cells, the header has 6 (no broker)" in err
    assert "3 gateway(s) of 2 school(s)" in r.stdout

    good = [out / "school-0001/gw-1", out / "school-0001/gw-2", out / "school-0002/gw-1"]
    for d in good:
        site = load_site(d / "site.yaml")  # the loader check-config uses
        c = site.config
        assert c.uplink is not None and c.uplink.username == f"{c.site.site_id}/{c.site.gateway_id}"
        assert c.uplink.keepalive_s == 20 and c.uplink.mqtt_version == "5"  # from the template
        assert c.uplink.password_file is not None
        secret = c.uplink.password_file
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text()) > 30
    assert not (out / "school-0004/gw-1/site.yaml").exists()
    assert (out / "school-0004/gw-1/site.yaml.broken").exists()

    one = load_site(out / "school-0001/gw-1/site.yaml").config
    assert one.site.name == "Riverside Primary"
    kitchen = one.zone("kitchen")
    assert kitchen.name == "Main kitchen" and kitchen.policy.persistence_s == 45  # template's
    assert one.cameras[0].source == "rtsp://viewer:secret@cam-school-0001.school.lan/stream2"
    assert one.uplink is not None and one.uplink.host == "mqtt.centre.example"
    two = load_site(out / "school-0001/gw-2/site.yaml").config
    assert two.uplink is not None and two.uplink.effective_port == 1884
    three = load_site(out / "school-0002/gw-1/site.yaml").config
    assert three.site.name == 'Hill School, "east" wing\n(annex)'
    assert three.uplink is not None and three.uplink.password_file is not None
    assert three.uplink.password_file.name == "secret-pw"

    r = cli("check-config", str(out / "school-0002/gw-1/site.yaml"))
    assert r.returncode == 0, r.stderr

    # broker files: only the valid gateways, each writing only under its own root
    passwd = (out / "broker/passwd").read_text().splitlines()
    assert [p.split(":")[0] for p in passwd] == [
        "school-0001/gw-1",
        "school-0001/gw-2",
        "school-0002/gw-1",
    ]
    acl = (out / "broker/acl").read_text()
    assert "user school-0001/gw-2\ntopic write firegate/school-0001/gw-2/#\n" in acl
    assert "school-0004" not in acl

    # the commissioning sheet says what to wire where and which doctor to run
    sheet = (out / "school-0001/commissioning.md").read_text()
    assert "## Gateway gw-1" in sheet and "## Gateway gw-2" in sheet
    assert "| rs485-1 | /dev/firegate-rs485-1 | 9600 8N1 | kitchen-smoke (" in sheet
    assert "| 3 | smoke | kitchen | kitchen ceiling, Riverside Primary |" in sheet
    assert "firegate doctor --config /etc/firegate/site.yaml" in sheet
    assert "secret@" not in sheet  # camera passwords are not printed
    assert not (out / "school-0004/commissioning.md").exists()


def test_a_second_run_keeps_every_password(tmp_path: Path) -> None:
    sites, template = write(tmp_path, SHEET.splitlines()[0] + "\n" + SHEET.splitlines()[1] + "\n")
    out = tmp_path / "out"
    provision(sites, template, out)
    first = (out / "school-0001/gw-1/mqtt-password").read_text()
    sites.write_text(sites.read_text() + "school-0009,gw-1,New,kitchen;hall,mqtt.centre.example\n")
    res = provision(sites, template, out)
    assert len(res.valid) == 2 and not res.report.problems
    assert (out / "school-0001/gw-1/mqtt-password").read_text() == first
    assert (out / "school-0009/gw-1/mqtt-password").read_text() != first


def test_sheet_and_template_errors_name_the_file(tmp_path: Path) -> None:
    sites, template = write(tmp_path, "site_id,gateway,zones,broker\n")
    r = cli("provision", "--sites", str(sites), "--template", str(template), "--out", "x")
    assert r.returncode == 2
    assert f"{sites}:1: header: missing column(s) gateway_id; unknown column(s) gateway" in r.stderr
    sites, template = write(tmp_path, SHEET, "zones: [\n")
    r = cli("provision", "--sites", str(sites), "--template", str(template), "--out", "x")
    assert r.returncode == 2 and f"{template}:2:1: not valid YAML" in r.stderr
    assert "Traceback" not in r.stderr
    sites, template = write(tmp_path, SHEET.replace("mqtt.centre.example,", "mqtts://m.example,"))
    res = provision(sites, template, tmp_path / "o")
    assert any("give the centre's CA certificate (--ca FILE)" in m for _, m in res.report.problems)


def test_parse_broker() -> None:
    assert parse_broker("mqtt.example") == ("mqtt.example", None, False)
    assert parse_broker("mqtts://mqtt.example:8883") == ("mqtt.example", 8883, True)
    assert parse_broker("10.0.0.5:1884") == ("10.0.0.5", 1884, False)
    for bad in ("http://x", "x:y", "", "a b"):
        with pytest.raises(ValueError):
            parse_broker(bad)


# ------------------------------------------------------------------ with a real broker


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_mosquitto_takes_the_credentials_and_the_acl(tmp_path: Path) -> None:
    sheet = SHEET.splitlines()[0] + "\n" + "\n".join(SHEET.splitlines()[1:3]) + "\n"
    sites, template = write(tmp_path, sheet)
    out = tmp_path / "out"
    res = provision(sites, template, out)
    assert len(res.valid) == 2
    broker = Mosquitto(
        tmp_path / "broker",
        anonymous=False,
        config=f"password_file {out / 'broker/passwd'}\nacl_file {out / 'broker/acl'}\n",
    )
    try:
        broker.start()
    except BrokerError as e:
        pytest.fail(str(e))
    try:

        def doctor(site: Path) -> dict[str, str]:
            """doctor's broker check with the provisioned login, against our mosquitto."""
            local = site.with_name("local.yaml")
            local.write_text(
                site.read_text().replace(
                    "host: mqtt.centre.example", f"host: 127.0.0.1\n  port: {broker.port}"
                )
            )
            r = cli("doctor", "--config", str(local), "--json", "--timeout-s", "5")
            rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
            return {x["check"]: x["outcome"] + " " + x["detail"] for x in rows}

        gw1 = out / "school-0001/gw-1/site.yaml"
        got = doctor(gw1)
        assert got["broker"].startswith("PASS"), got
        assert got["broker publish"].startswith("PASS"), got  # its own root: accepted
        # gateway 1's login publishing under gateway 2's root: the ACL refuses it
        other = gw1.with_name("other.yaml")
        other.write_text(
            gw1.read_text().replace(
                "uplink:\n", "uplink:\n  topic_root: firegate/school-0001/gw-2\n", 1
            )
        )
        got = doctor(other)["broker publish"]
        assert got.startswith("FAIL") and "refused" in got, got
        # a wrong password: refused at login
        pw = out / "school-0001/gw-1/mqtt-password"
        pw.write_text("not-the-password\n")
        got = doctor(gw1)["broker"]
        assert got.startswith("FAIL"), got
    finally:
        broker.stop()


def test_mosquitto_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """Our $7$ line and mosquitto_passwd's verify the same password (checked by mosquitto
    in the test above); here the format: PBKDF2-SHA512, 101 rounds, 12-byte salt."""
    h = mosquitto_hash("pw", salt=b"0123456789ab")
    _, seven, rounds, salt, digest = h.split("$")
    assert (seven, rounds, salt) == ("7", "101", "MDEyMzQ1Njc4OWFi") and len(digest) == 88
    if shutil.which("mosquitto_passwd"):
        f = tmp_path / "pw"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(f), "u", "pw"], check=True)
        theirs = f.read_text().strip().split(":", 1)[1]
        assert theirs.split("$")[1:3] == ["7", "101"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_certificate_requests(tmp_path: Path) -> None:
    sheet = SHEET.splitlines()[0] + "\n" + SHEET.splitlines()[1] + "\n"
    sites, template = write(tmp_path, sheet)
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")  # copied, not parsed, at provisioning
    out = tmp_path / "out"
    res = provision(sites, template, out, auth="cert", ca=ca)
    assert len(res.valid) == 1 and not res.report.problems
    d = out / "school-0001/gw-1"
    assert stat.S_IMODE((d / "client.key").stat().st_mode) == 0o600
    r = subprocess.run(
        ["openssl", "req", "-in", str(d / "client.csr"), "-noout", "-verify", "-subject"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "CN = school-0001/gw-1" in r.stdout + r.stderr, r.stderr
    text = (d / "site.yaml").read_text()
    assert "cert_file: client.crt" in text and "key_file: client.key" in text
    assert not (out / "broker").exists()
    # once the centre signs it, check-config takes it as it is
    (d / "client.crt").write_text("signed later\n")
    load_site(d / "site.yaml")


def test_many_rows_use_every_worker(tmp_path: Path) -> None:
    rows = [SHEET.splitlines()[0]] + [
        f"school-{i:05d},gw-1,School {i},kitchen;hall,mqtt.centre.example," for i in range(600)
    ]
    rows[300] = "school-00299,gw-1,Broken,kitchen,mqtt.centre.example,"
    sites, template = write(tmp_path, "\n".join(rows) + "\n")
    before = loader.load_profile
    res = provision(sites, template, tmp_path / "out", workers=2)
    assert loader.load_profile is before  # the profile cache is gone after the run
    res1 = provision(sites, template, tmp_path / "out1", workers=1)
    assert loader.load_profile is before
    assert [r.line for r in res1.valid] == [r.line for r in res.valid]
    assert len(res.valid) == 599
    assert [line for line, _ in res.report.problems] == [301]
    assert os.path.exists(tmp_path / "out/school-00599/gw-1/site.yaml")


def test_a_sheet_saved_with_semicolons(tmp_path: Path) -> None:
    """Spreadsheets in many locales save CSV with ';': the zones cell is then quoted."""
    sheet = (
        "site_id;gateway_id;zones;broker\n"
        's1;gw-1;"kitchen;hall";m.example\n'
        "s2;gw-1;kitchen;hall;m.example\n"
    )
    sites, template = write(tmp_path, sheet)
    res = provision(sites, template, tmp_path / "out")
    assert [r.site_id for r in res.valid] == ["s1"]
    assert res.report.lines() == [
        f"{sites}:3: 5 cells, the header has 4 (a ';' inside a cell needs quotes around the cell)"
    ]


def test_an_output_folder_that_cannot_be_written(tmp_path: Path) -> None:
    sites, template = write(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = cli(
        *("provision", "--sites", str(sites), "--template", str(template)),
        *("--out", str(blocker / "out")),
    )
    assert r.returncode == 1 and "choose another --out" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
