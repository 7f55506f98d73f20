"""`firegate provision --sites sites.csv --template site-template.yaml --out DIR`.

One site config per gateway from a sheet of schools, each validated with the
same loader as ``firegate check-config``, plus the gateway's MQTT credentials and
a printable commissioning sheet per school. Broken rows are reported with their
line (``sites.csv:17: ...``) and written nowhere; exit 2 when any row is broken.

The sheet (CSV, UTF-8, one header line; column order free):

  site_id, gateway_id     required; the names the monitoring centre knows
  school_name             optional; the site's human-readable name
  zones                   required; ``id`` or ``id=Name``, separated by ``;``
                          (a zone of the template with the same id lends its policy)
  broker                  required; ``host``, ``host:port``, ``mqtt://host:port`` or
                          ``mqtts://host:port`` (TLS)
  credentials_file        optional; where the site config finds its secret, relative
                          to the config's folder (default ``mqtt-password``, or
                          ``client`` for client.key/client.crt with ``--auth cert``)

The template is a site config (buses, cameras, policies, storage...) whose
``site`` and ``zones`` are replaced per row and whose ``uplink`` gets the row's
broker and credentials; ``{site_id}``, ``{gateway_id}`` and ``{school_name}`` in
any string are filled in.

Output::

  DIR/<site_id>/<gateway_id>/site.yaml      copy to /etc/firegate/ on that gateway
  DIR/<site_id>/<gateway_id>/mqtt-password  (--auth password, mode 0600), or
  DIR/<site_id>/<gateway_id>/client.key, client.csr  (--auth cert; openssl)
  DIR/<site_id>/commissioning.md            the installer's sheet for the school
  DIR/broker/passwd, DIR/broker/acl         mosquitto password file and ACL
                                            (--auth password; every gateway)

A second run keeps every password and key already in DIR (the broker and the
gateways installed so far keep agreeing); only new gateways get new secrets.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import csv
import functools
import hashlib
import io
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.logs import redact_url
from agent.siteconfig import ConfigError, load_site, loader
from agent.siteconfig.models import PanelBus, RtuBus, TcpBus

REQUIRED = ("site_id", "gateway_id", "zones", "broker")
OPTIONAL = ("school_name", "credentials_file")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for its $7$ (PBKDF2-SHA512) hashes
MAX_ROWS = 100_000
CHUNK = 256  # configs validated per worker task
CA_NAME = "ca.crt"


class ProvisionError(Exception):
    """The sheet or the template cannot be used at all (not one broken row)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "provision",
        help="make one site config, MQTT credentials and a commissioning sheet per school",
        description="Make a site config per gateway from a sheet of schools and a template "
        "site config, each checked like check-config, with MQTT credentials (a password and "
        "mosquitto password-file/ACL lines, or a key and certificate request) and a "
        "commissioning sheet per school. Exit 0 when every row is valid, 2 when not.",
    )
    p.add_argument("--sites", required=True, type=Path, help="the sheet (CSV)")
    p.add_argument("--template", required=True, type=Path, help="template site config (YAML)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--auth",
        choices=("password", "cert"),
        default="password",
        help="password: random password + mosquitto lines (default); cert: EC key + CSR "
        "(openssl) for the centre's CA to sign",
    )
    p.add_argument(
        "--ca",
        type=Path,
        default=None,
        help="the CA certificate that signed the broker's certificate: copied as ca.crt "
        "beside each site.yaml of an mqtts:// broker (needed for those and for --auth cert)",
    )
    p.add_argument(
        "--workers", type=int, default=0, help="processes validating configs (default: CPUs)"
    )
    p.set_defaults(func=run)


# ------------------------------------------------------------------ the sheet


@dataclass(frozen=True)
class Row:
    line: int
    site_id: str
    gateway_id: str
    school_name: str
    zones: tuple[tuple[str, str], ...]  # (id, name)
    host: str
    port: int | None
    tls: bool
    credentials_file: str

    @property
    def username(self) -> str:
        # '/' is in no site or gateway name: one username per pair, never ambiguous
        return f"{self.site_id}/{self.gateway_id}"


@dataclass
class Report:
    sites: Path
    problems: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int, msg: str) -> None:
        self.problems.append((line, msg))

    def lines(self) -> list[str]:
        return [f"{self.sites}:{line}: {msg}" for line, msg in sorted(self.problems)]


def _name_problem(what: str, v: str) -> str | None:
    if not v:
        return f"{what} is empty"
    if len(v) > 64 or not (v[0].isalnum() and v.isascii()) or not set(v) <= NAME_CHARS:
        return (
            f"{what} {v!r}: letters, digits, '-', '_' and '.', starting with a letter or "
            "digit, at most 64"
        )
    return None


def parse_broker(text: str) -> tuple[str, int | None, bool]:
    """(host, port or None, tls) from ``host``, ``host:port`` or ``mqtt[s]://host:port``."""
    t = text.strip()
    tls = False
    if "://" in t:
        scheme, _, t = t.partition("://")
        if scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker {text!r}: scheme {scheme!r}, give mqtt:// or mqtts://")
        tls = scheme == "mqtts"
    t = t.rstrip("/")
    host, port = t, None
    if t.count(":") == 1:
        host, _, p = t.partition(":")
        if not p.isdigit() or not 1 <= int(p) <= 65535:
            raise ValueError(f"broker {text!r}: port {p!r} is not 1-65535")
        port = int(p)
    if not host or "/" in host or " " in host:
        raise ValueError(f"broker {text!r}: give host, host:port or mqtts://host:port")
    return host, port, tls


def read_sheet(path: Path, report: Report, auth: str) -> list[Row]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ProvisionError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ProvisionError(
            f"{path}:{line}: not UTF-8 text (save the sheet as CSV UTF-8)"
        ) from None
    # the delimiter of the header line: spreadsheets in some locales save with ';'
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [h.strip().lower().replace(" ", "_") for h in next(reader)]
    except StopIteration:
        raise ProvisionError(f"{path}: the sheet is empty") from None
    missing = [c for c in REQUIRED if c not in header]
    unknown = [h for h in header if h not in REQUIRED + OPTIONAL]
    if missing or unknown:
        msg = f"{path}:1: header: "
        msg += f"missing column(s) {', '.join(missing)}" if missing else ""
        msg += "; " if missing and unknown else ""
        msg += f"unknown column(s) {', '.join(unknown)}" if unknown else ""
        raise ProvisionError(f"{msg} (columns: {', '.join(REQUIRED + OPTIONAL)})")
    rows: list[Row] = []
    seen: dict[tuple[str, str], int] = {}
    prev_end = reader.line_num
    for cells in reader:
        line = prev_end + 1
        prev_end = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(rows) + len(report.problems) >= MAX_ROWS:
            raise ProvisionError(f"{path}: more than {MAX_ROWS} rows; split the sheet")
        lacking = [h for h in header[len(cells) :] if h in REQUIRED]
        if len(cells) > len(header) or lacking:
            why = (
                f" (no {', '.join(lacking)})"
                if lacking
                else f" (a {delimiter!r} inside a cell needs quotes around the cell)"
            )
            report.add(line, f"{len(cells)} cells, the header has {len(header)}{why}")
            continue
        cells += [""] * (len(header) - len(cells))  # trailing optional cells left out
        v = {h: c.strip() for h, c in zip(header, cells, strict=True)}
        bad = [
            p
            for p in (
                _name_problem("site_id", v["site_id"]),
                _name_problem("gateway_id", v["gateway_id"]),
            )
            if p
        ]
        zones: list[tuple[str, str]] = []
        for part in v["zones"].split(";"):
            if not part.strip():
                continue
            zid, _, zname = part.partition("=")
            zid = zid.strip()
            p = _name_problem("zone", zid)
            if p:
                bad.append(f"zones: {p}")
            elif zid in (z for z, _ in zones):
                bad.append(f"zones: {zid!r} twice")
            else:
                zones.append((zid, zname.strip()))
        if not zones and not any(b.startswith("zones") for b in bad):
            bad.append("zones is empty: give at least one zone (id or id=Name, separated by ';')")
        try:
            host, port, tls = parse_broker(v["broker"])
        except ValueError as e:
            bad.append(str(e))
            host, port, tls = "", None, False
        cred = v.get("credentials_file", "") or ("client" if auth == "cert" else "mqtt-password")
        if cred.startswith("/") or ".." in Path(cred).parts or not _safe_file(cred):
            bad.append(
                f"credentials_file {cred!r}: a file name next to site.yaml (letters, digits, -_.)"
            )
        key = (v["site_id"], v["gateway_id"])
        if not bad and key in seen:
            bad.append(f"site {key[0]} gateway {key[1]} is already on line {seen[key]}")
        if bad:
            for b in bad:
                report.add(line, b)
            continue
        seen[key] = line
        rows.append(
            Row(line, key[0], key[1], v.get("school_name", ""), tuple(zones), host, port, tls, cred)
        )
    return rows


def _safe_file(name: str) -> bool:
    return bool(name) and set(name) <= NAME_CHARS | {"/"} and not name.endswith("/")


# ------------------------------------------------------------------ the template


def read_template(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise ProvisionError(f"{path}: cannot read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ProvisionError(
            f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})"
        ) from None
    if not isinstance(data, dict):
        raise ProvisionError(f"{path}: a template is a site config (a YAML mapping)")
    return data


def _fill(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, str):
        for k, v in values.items():
            node = node.replace("{" + k + "}", v)
        return node
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    return node


def site_config_for(row: Row, template: dict[str, Any], auth: str, ca_file: str) -> dict[str, Any]:
    """The site config (as data) of one row: the template with the row's values."""
    values = {"site_id": row.site_id, "gateway_id": row.gateway_id, "school_name": row.school_name}
    # the template's own {site_id} in topic_root is the agent's, not ours: keep it
    uplink_t: dict[str, Any] = (
        template["uplink"] if isinstance(template.get("uplink"), dict) else {}
    )
    data = _fill({k: v for k, v in template.items() if k != "uplink"}, values)
    site: dict[str, Any] = {"site_id": row.site_id, "gateway_id": row.gateway_id}
    if row.school_name:
        site["name"] = row.school_name
    data["site"] = site
    by_id = {
        z.get("id"): z for z in template.get("zones") or [] if isinstance(z, dict) and "id" in z
    }
    zones = []
    for zid, zname in row.zones:
        z = copy.deepcopy(by_id.get(zid, {}))
        z["id"] = zid
        if zname:
            z["name"] = zname
        zones.append(z)
    data["zones"] = zones
    up = copy.deepcopy(uplink_t)
    for k in ("password", "password_file", "username", "host", "port", "tls"):
        up.pop(k, None)
    up["host"] = row.host
    if row.port is not None:
        up["port"] = row.port
    tls = dict(uplink_t.get("tls") or {}) if isinstance(uplink_t.get("tls"), dict) else {}
    if row.tls or auth == "cert":
        tls["ca_file"] = ca_file
        if auth == "cert":
            tls["cert_file"] = f"{row.credentials_file}.crt"
            tls["key_file"] = f"{row.credentials_file}.key"
        up["tls"] = tls
    if auth == "password":
        up["username"] = row.username
        up["password_file"] = row.credentials_file
    else:
        up["username"] = row.username  # brokers may also map the certificate's CN
    data["uplink"] = up
    # keys in the order an installer expects to read them
    order = ["version", "site", "zones", "buses", "cameras", "uplink"]
    return {k: data[k] for k in order if k in data} | {
        k: v for k, v in data.items() if k not in order
    }


# ------------------------------------------------------------------ credentials


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """A mosquitto 2.x password-file hash ($7$: PBKDF2-SHA512), as mosquitto_passwd writes."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"
    )


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def password_for(gw_dir: Path, row: Row) -> str:
    """The gateway's password: the one already provisioned in ``gw_dir``, or a new one."""
    p = gw_dir / row.credentials_file
    if p.is_file():
        old = p.read_text(encoding="utf-8").rstrip("\r\n")
        if old:
            return old
    pw = secrets.token_urlsafe(24)
    _write_secret(p, pw + "\n")
    return pw


def csr_for(gw_dir: Path, row: Row) -> None:
    """An EC P-256 key and a certificate request (CN = site/gateway), kept when present."""
    key = gw_dir / f"{row.credentials_file}.key"
    csr = gw_dir / f"{row.credentials_file}.csr"
    if key.is_file() and csr.is_file():
        return
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ProvisionError("--auth cert needs openssl (apt-get install openssl)")
    key.parent.mkdir(parents=True, exist_ok=True)
    cn = row.username.replace("/", "\\/")  # '/' separates the parts of -subj
    subj = f"/CN={cn}/O=firegate/OU={row.site_id}"
    r = subprocess.run(
        [
            *(openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subj),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        raise ProvisionError(f"openssl could not make {csr}: {r.stderr.strip()[-300:]}")
    os.chmod(key, 0o600)


def acl_block(row: Row, topic_root: str) -> str:
    root = topic_root.format(site_id=row.site_id, gateway_id=row.gateway_id)
    return (
        f"# {' '.join((row.school_name or row.site_id).split())} (sheet line {row.line})\n"
        f"user {row.username}\n"
        f"topic write {root}/#\n"
        f"topic read {root}/request/#\n"
    )


# ------------------------------------------------------------------ checking


@contextlib.contextmanager
def _profiles_read_once() -> Iterator[None]:
    """While provisioning, each device profile file is parsed once, not once per site
    (every site names the same few; parsing them was 3/4 of the time). The files do
    not change during a run; the loader is put back as it was afterwards."""
    original = loader.load_profile
    loader.load_profile = functools.lru_cache(maxsize=512)(original)
    try:
        yield
    finally:
        loader.load_profile = original


def _validate_chunk(paths: list[str]) -> list[tuple[list[str], str]]:
    """check-config's loader on each file: (problems, commissioning section)."""
    out = []
    with _profiles_read_once():
        for p in paths:
            try:
                site = load_site(p)
            except ConfigError as e:
                out.append(([str(x) for x in e.problems], ""))
                continue
            out.append(([], commissioning_section(site)))
    return out


def commissioning_section(site: Any) -> str:
    c = site.config
    out = [f"## Gateway {c.site.gateway_id}", ""]
    if c.buses:
        out += ["| bus | port / address | line | device | Modbus id | kind | zone | where |"]
        out += ["|---|---|---|---|---|---|---|---|"]
    for b in c.buses:
        if isinstance(b, RtuBus):
            port, line = str(b.port), f"{b.baudrate} 8{b.parity}{b.stopbits}"
        elif isinstance(b, TcpBus):
            port, line = f"{b.host}:{b.port}", "Modbus TCP"
        else:
            port, line = str(b.port), f"{b.baudrate} 8{b.parity}{b.stopbits}"
        if isinstance(b, PanelBus):
            prof = site.panel_profile(b.profile)
            out.append(
                f"| {b.name} | {port} | {line} | fire panel ({prof.vendor} {prof.model}) | - | "
                f"panel | {b.zone} | {len(b.points)} point(s) mapped |"
            )
            continue
        for d in b.devices:
            prof = site.modbus_profile(d.profile)
            kind = (d.kind or prof.device_kind).value
            out.append(
                f"| {b.name} | {port} | {line} | {d.name} ({prof.vendor} {prof.model}) | "
                f"{d.device_id} | {kind} | {d.zone} | {d.label or ''} |"
            )
    if c.cameras:
        out += ["", "| camera | zone | stream |", "|---|---|---|"]
        out += [f"| {cam.name} | {cam.zone} | {redact_url(cam.source)} |" for cam in c.cameras]
    up = c.uplink
    if up is not None:
        scheme = "mqtts" if up.tls else "mqtt"
        out += ["", f"Broker: {scheme}://{up.host}:{up.effective_port}, user `{up.username}`."]
    return "\n".join(out) + "\n"


def commissioning_sheet(rows: list[Row], sections: list[str], sheet: Path) -> str:
    r0 = rows[0]
    title = " ".join((r0.school_name or r0.site_id).split())
    out = [
        f"# Commissioning sheet: {title}",
        "",
        f"Site **{r0.site_id}**; {len(rows)} gateway(s); from {sheet.name} line(s) "
        f"{', '.join(str(r.line) for r in rows)}. Zones: "
        + ", ".join(f"{zid}{f' ({zn})' if zn else ''}" for zid, zn in r0.zones)
        + ".",
        "",
        "Wire each detector to the bus and Modbus address below (set the address on the "
        "detector first; one address per bus), then on each gateway:",
        "",
        "1. Install the offline bundle: `tar xf firegate-*.tar && sudo ./firegate-*/install.sh`",
        "2. Copy this gateway's folder (`site.yaml` and its credentials) to `/etc/firegate/`;"
        " `sudo chgrp firegate /etc/firegate/*; sudo chmod 640 /etc/firegate/*`",
        "3. `firegate check-config /etc/firegate/site.yaml`",
        "4. `sudo firegate doctor --config /etc/firegate/site.yaml`: every line PASS "
        "(a detector that FAILs: check its wiring, address and termination)",
        "5. `sudo systemctl restart firegate && firegate status`; test one detector per zone "
        "with test smoke and note the time the centre confirms it.",
        "",
    ]
    for s in sections:
        out.append(s)
    out += [
        "## Sign-off",
        "",
        "| gateway | doctor all PASS | test alarm seen by the centre (time) | installer | date |",
        "|---|---|---|---|---|",
    ]
    out += [f"| {r.gateway_id} | | | | |" for r in rows]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ the command


@dataclass
class Result:
    rows: list[Row]
    valid: list[Row]
    report: Report
    seconds: float


def provision(
    sites: Path,
    template_path: Path,
    out: Path,
    *,
    auth: str = "password",
    ca: Path | None = None,
    workers: int = 0,
) -> Result:
    t0 = time.perf_counter()
    report = Report(sites)
    if ca is not None and not ca.is_file():
        raise ProvisionError(f"--ca {ca}: file not found")
    rows = read_sheet(sites, report, auth)
    if ca is None:
        for row in [r for r in rows if r.tls or auth == "cert"]:
            report.add(
                row.line, "the broker uses TLS: give the centre's CA certificate (--ca FILE)"
            )
            rows.remove(row)
    template = read_template(template_path)
    topic_root = "firegate/{site_id}/{gateway_id}"
    if isinstance(template.get("uplink"), dict) and template["uplink"].get("topic_root"):
        topic_root = str(template["uplink"]["topic_root"])
    dump = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    paths: list[str] = []
    for row in rows:
        gw_dir = out / row.site_id / row.gateway_id
        gw_dir.mkdir(parents=True, exist_ok=True)
        data = site_config_for(row, template, auth, CA_NAME)
        if ca is not None and (row.tls or auth == "cert"):
            shutil.copyfile(ca, gw_dir / CA_NAME)
        if auth == "password":
            password_for(gw_dir, row)
        else:
            csr_for(gw_dir, row)
        title = " ".join((row.school_name or row.site_id).split())  # one comment line
        head = (
            f"# {title}: gateway {row.gateway_id}\n"
            f"# made by `firegate provision` from {sites.name} line {row.line} and "
            f"{template_path.name}; check with: firegate check-config site.yaml\n"
        )
        text = yaml.dump(data, Dumper=dump, sort_keys=False, allow_unicode=True, width=100)
        (gw_dir / "site.yaml").write_text(head + text, encoding="utf-8")
        paths.append(str(gw_dir / "site.yaml"))
    checked = list(_validate_all(paths, workers))
    valid: list[Row] = []
    sections: dict[str, list[tuple[Row, str]]] = {}
    for row, (problems, section) in zip(rows, checked, strict=True):
        if auth == "cert":  # signed later by the centre's CA: the one file allowed to be missing
            crt = (out / row.site_id / row.gateway_id).resolve() / f"{row.credentials_file}.crt"
            problems = [p for p in problems if not p.endswith(f"file '{crt}' not found")]
        if problems:
            # kept for reading beside the report, under a name the agent never loads
            bad = out / row.site_id / row.gateway_id / "site.yaml"
            bad.replace(bad.with_name("site.yaml.broken"))
            for p in problems:
                p = p.replace(f"{bad}:", f"{bad}.broken:", 1)
                report.add(row.line, f"site {row.site_id} gateway {row.gateway_id}: {p}")
            continue
        valid.append(row)
        sections.setdefault(row.site_id, []).append((row, section))
    passwd, acl = (
        [],
        [
            "# mosquitto ACL made by `firegate provision`: each gateway writes only under its",
            "# own topic root and reads only its requests. Add the centre's consumers, e.g.:",
            "#   user centre",
            "#   topic read firegate/#",
            "#   topic write firegate/+/+/request/#",
            "",
        ],
    )
    for row in valid:
        gw_dir = out / row.site_id / row.gateway_id
        if auth == "password":
            passwd.append(f"{row.username}:{mosquitto_hash(password_for(gw_dir, row))}")
            acl.append(acl_block(row, topic_root))
    for site_id, items in sections.items():
        (out / site_id / "commissioning.md").write_text(
            commissioning_sheet([r for r, _ in items], [s for _, s in items], sites),
            encoding="utf-8",
        )
    if auth == "password" and valid:
        _write_secret(out / "broker" / "passwd", "\n".join(passwd) + "\n")
        (out / "broker" / "acl").write_text("\n".join(acl) + "\n", encoding="utf-8")
    return Result(rows, valid, report, time.perf_counter() - t0)


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _validate_all(paths: list[str], workers: int) -> Iterator[tuple[list[str], str]]:
    workers = workers or (os.cpu_count() or 1)
    if workers <= 1 or len(paths) <= CHUNK:
        yield from _validate_chunk(paths)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(_validate_chunk, _chunks(paths, CHUNK)):
            yield from part


def run(args: argparse.Namespace) -> int:
    try:
        res = provision(
            args.sites,
            args.template,
            args.out,
            auth=args.auth,
            ca=args.ca,
            workers=args.workers,
        )
    except ProvisionError as e:
        print(f"firegate provision: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the output folder: full disk, no permission
        print(
            f"firegate provision: {e.filename or args.out}: {e.strerror or e} "
            "(choose another --out, or free space)",
            file=sys.stderr,
        )
        return 1
    broken = len({line for line, _ in res.report.problems})
    if res.report.problems:
        print(
            f"{args.sites}: {broken} broken row{'s' if broken != 1 else ''} (not provisioned)",
            file=sys.stderr,
        )
        for line in res.report.lines():
            print(f"  {line}", file=sys.stderr)
    print(
        f"{len(res.valid)} gateway(s) of {len({r.site_id for r in res.valid})} school(s) "
        f"provisioned in {args.out} ({res.seconds:.1f} s), each checked like check-config"
    )
    if args.auth == "password" and res.valid:
        print(f"broker: {args.out / 'broker' / 'passwd'} and {args.out / 'broker' / 'acl'}")
    elif res.valid:
        print("certificates: sign each client.csr with the centre's CA; put client.crt beside it")
    return 2 if res.report.problems else 0
