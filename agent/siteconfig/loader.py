"""Load and check a site config and the device profiles it names.

Everything an installer can get wrong is reported at once, each problem with
the file, line, key path and what to do; nothing here ever lets a traceback
reach the person (see ``ConfigError``).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from agent.siteconfig import yamlpos
from agent.siteconfig.models import (
    CameraConfig,
    PanelBus,
    RtuBus,
    SiteConfig,
    TcpBus,
    camera_source_is_file,
)
from agent.siteconfig.yamlpos import PathKey, Position
from config import BUILTIN_PROFILES
from drivers.profile import ModbusProfile, PanelProfile, Profile

MAX_CONFIG_BYTES = 4 * 1024 * 1024
_SECRET_WORDS = ("password", "secret", "token")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file, located for a person."""

    file: Path
    position: Position | None
    path: PathKey
    message: str

    def __str__(self) -> str:
        where = str(self.file)
        if self.position is not None:
            where += f":{self.position.line}:{self.position.column}"
        key = format_path(self.path)
        return f"{where}: {key + ': ' if key else ''}{self.message}"


class ConfigError(Exception):
    """The site config (or a profile it uses) is not usable; ``problems`` lists all."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(
            problems,
            key=lambda p: (str(p.file), p.position.line if p.position else 0, format_path(p.path)),
        )
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class LoadedSite:
    """A valid site config with every profile it names, ready to run."""

    config: SiteConfig
    profiles: Mapping[str, ModbusProfile | PanelProfile]
    path: Path
    profile_files: Mapping[str, Path] = field(default_factory=dict)

    def modbus_profile(self, name: str) -> ModbusProfile:
        p = self.profiles[name]
        assert isinstance(p, ModbusProfile)
        return p

    def panel_profile(self, name: str) -> PanelProfile:
        p = self.profiles[name]
        assert isinstance(p, PanelProfile)
        return p


def format_path(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ------------------------------------------------------------------ reading files


def _read_text(path: Path) -> str:
    """The file's text, or ConfigError saying why it cannot be read."""

    def fail(msg: str) -> ConfigError:
        return ConfigError([Problem(path, None, (), msg)])

    try:
        if path.is_dir():
            raise fail("is a folder, not a config file")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise fail(f"is {size} bytes; a config file is at most {MAX_CONFIG_BYTES} bytes")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise fail("file not found") from None
    except PermissionError:
        raise fail("permission denied: run as a user that may read it") from None
    except OSError as e:
        raise fail(f"cannot read: {e.strerror or e}") from None
    if b"\x00" in raw:
        raise fail("is a binary file, not YAML text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            [Problem(path, Position(line, 1), (), "is not UTF-8 text (save it as UTF-8)")]
        ) from None


def _parse(path: Path, text: str) -> tuple[Any, dict[PathKey, Position]]:
    try:
        data, marks = yamlpos.load(text)
    except yamlpos.YamlError as e:
        raise ConfigError(
            [Problem(path, p.position, p.path, p.message) for p in e.problems]
        ) from None
    if data is None:
        raise ConfigError([Problem(path, None, (), "is empty; see config/example-site.yaml")])
    if not isinstance(data, dict):
        raise ConfigError(
            [
                Problem(
                    path,
                    marks.get(()),
                    (),
                    f"must be a mapping of keys (site:, zones:, ...), not a {_kind(data)}",
                )
            ]
        )
    return data, marks


def _kind(v: Any) -> str:
    return {list: "list", str: "text", int: "number", float: "number", bool: "true/false"}.get(
        type(v), type(v).__name__
    )


# --------------------------------------------------------- pydantic error -> Problem


def _data_path(data: Any, loc: tuple[int | str, ...]) -> PathKey:
    """Drop the union tags pydantic puts into ``loc``, keeping real keys/indexes."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if (isinstance(cur, dict) and part in cur) or (
            isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        ):
            out.append(part)
            cur = cur[part]  # type: ignore[index]
        elif isinstance(cur, dict | list):
            if isinstance(part, str) and part in _UNION_TAGS:
                continue  # a discriminator tag, not a key of the file
            out.append(part)  # a key that is missing from the file
            cur = None
        else:
            out.append(part)
            cur = None
    return tuple(out)


_UNION_TAGS = {"rtu", "tcp", "panel", "modbus", "serial_panel"}


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types an annotation may hold (Optional, Annotated, unions)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _unwrap(a) if t is not type(None)]
    return [tp]


def _model_at(root: type[BaseModel], data: Any, path: PathKey) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (for key suggestions)."""
    cands: list[Any] = [root]
    cur = data
    for part in path:
        nxt: list[Any] = []
        for c in cands:
            if isinstance(c, type) and issubclass(c, BaseModel):
                f = c.model_fields.get(str(part))
                if f is not None:
                    nxt.extend(_unwrap(f.annotation))
            else:
                args = typing.get_args(c)
                origin = typing.get_origin(c)
                if origin in (tuple, list) and args:
                    nxt.extend(_unwrap(args[0]))
                elif origin is dict and len(args) == 2:
                    nxt.extend(_unwrap(args[1]))
        cur = (
            cur.get(part)
            if isinstance(cur, dict)
            else (
                cur[part]
                if isinstance(cur, list) and isinstance(part, int) and part < len(cur)
                else None
            )
        )
        cands = nxt
        models = [c for c in cands if isinstance(c, type) and issubclass(c, BaseModel)]
        if len(models) > 1 and isinstance(cur, dict):
            # a discriminated union: pick the member whose tag the data names
            for m in models:
                for fname in ("type", "kind"):
                    f = m.model_fields.get(fname)
                    if f is not None and cur.get(fname) in typing.get_args(f.annotation):
                        cands = [m]
    models = [c for c in cands if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a near-miss, else ''."""
    choices = list(choices)
    norm = {c.replace("_", "").replace("-", "").lower(): c for c in choices}
    key = word.replace("_", "").replace("-", "").lower()
    if key in norm:
        return f"; did you mean {norm[key]!r}?"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _is_secret(path: PathKey) -> bool:
    return any(isinstance(p, str) and any(w in p.lower() for w in _SECRET_WORDS) for p in path)


def _problems_from(
    err: ValidationError,
    root: type[BaseModel],
    data: Any,
    file: Path,
    marks: dict[PathKey, Position],
) -> list[Problem]:
    out: list[Problem] = []
    errors = err.errors(include_url=False)
    paths = [_data_path(data, tuple(e["loc"])) for e in errors]
    for e, path in zip(errors, paths, strict=True):
        etype = e["type"]
        if etype == "too_short" and any(
            len(q) > len(path) and q[: len(path)] == path for q in paths
        ):
            continue  # a list whose items failed: the items' own errors say why
        if etype == "extra_forbidden":
            key = str(path[-1])
            model = _model_at(root, data, path[:-1])
            hint = suggest(key, model.model_fields) if model else ""
            allowed = (
                f" (allowed here: {', '.join(model.model_fields)})" if model and not hint else ""
            )
            msg = f"unknown key {key!r}{hint}{allowed}"
        elif etype == "missing":
            msg = f"required key {path[-1]!r} is missing"
        elif etype == "union_tag_invalid":
            ctx = e.get("ctx", {})
            tags = str(ctx.get("expected_tags", "")).replace("'", "").split(", ")
            got = str(ctx.get("tag", ""))
            path = (*path, str(ctx.get("discriminator", "type")).strip("'"))
            msg = f"{got!r} is not one of: {', '.join(tags)}{suggest(got, tags)}"
        elif etype == "union_tag_not_found":
            ctx = e.get("ctx", {})
            disc = str(ctx.get("discriminator", "type")).strip("'")
            msg = f"required key {disc!r} is missing (it says what this entry is)"
            path = (*path, disc)
        else:
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            inp = e.get("input")
            if (
                not _is_secret(path)
                and isinstance(inp, str | int | float | bool)
                and etype not in ("value_error", "assertion_error")
            ):
                msg += f" (got {inp!r})"
        out.append(Problem(file, _locate(marks, path), path, msg))
    return out


def _locate(marks: dict[PathKey, Position], path: PathKey) -> Position | None:
    """Position of ``path``, or of its nearest ancestor present in the file."""
    for n in range(len(path), -1, -1):
        pos = marks.get(path[:n])
        if pos is not None:
            return pos
    return None


# -------------------------------------------------------------------- profiles

_PROFILE_ADAPTER: TypeAdapter[ModbusProfile | PanelProfile] = TypeAdapter(Profile)


def find_profile(name: str, dirs: Iterable[Path]) -> Path | None:
    for d in (*dirs, BUILTIN_PROFILES):
        for ext in (".yaml", ".yml"):
            p = d / f"{name}{ext}"
            if p.is_file():
                return p
    return None


def available_profiles(dirs: Iterable[Path] = ()) -> list[str]:
    names: set[str] = set()
    for d in (*dirs, BUILTIN_PROFILES):
        if d.is_dir():
            names.update(p.stem for p in d.iterdir() if p.suffix in (".yaml", ".yml"))
    return sorted(names)


def load_profile(path: Path) -> ModbusProfile | PanelProfile:
    """Load one profile file; ConfigError with located problems when invalid."""
    text = _read_text(path)
    data, marks = _parse(path, text)
    root = ModbusProfile if data.get("kind", "modbus") == "modbus" else PanelProfile
    try:
        return _PROFILE_ADAPTER.validate_python(data)
    except ValidationError as e:
        raise ConfigError(_problems_from(e, root, data, path, marks)) from None


# ----------------------------------------------------------------------- the site


def load_site(path: Path | str) -> LoadedSite:
    """Read, validate and cross-check a site config and its profiles.

    Raises ConfigError listing every problem found (not only the first).
    """
    path = Path(path)
    text = _read_text(path)
    data, marks = _parse(path, text)
    try:
        config = SiteConfig.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as e:
        # The structure is wrong somewhere; the cross-references (zones, profiles,
        # unique names and ids) are still checked on what the file says, so that
        # one pass reports both kinds.
        found = _problems_from(e, SiteConfig, data, path, marks)
        bad = [p.path for p in found]

        def report_raw(p: PathKey, msg: str) -> None:
            if not any(p[: len(b)] == b for b in bad):  # already wrong there
                found.append(Problem(path, _locate(marks, p), p, msg))

        _raw_cross_check(data, path.resolve().parent, report_raw)
        raise ConfigError(found) from None

    problems: list[Problem] = []

    def report(p: PathKey, msg: str) -> None:
        problems.append(Problem(path, _locate(marks, p), p, msg))

    profiles, files = _load_profiles(config, report, problems)
    _cross_check(config, profiles, report)
    if problems:
        raise ConfigError(problems)
    return LoadedSite(config=config, profiles=profiles, path=path, profile_files=files)


def _load_profiles(
    config: SiteConfig,
    report: typing.Callable[[PathKey, str], None],
    problems: list[Problem],
) -> tuple[dict[str, ModbusProfile | PanelProfile], dict[str, Path]]:
    for i, d in enumerate(config.profile_dirs):
        if not d.is_dir():
            report(("profile_dirs", i), f"folder {str(d)!r} does not exist")
    wanted: dict[str, list[PathKey]] = {}
    for bi, bus in enumerate(config.buses):
        if isinstance(bus, PanelBus):
            wanted.setdefault(bus.profile, []).append(("buses", bi, "profile"))
        else:
            for di, dev in enumerate(bus.devices):
                wanted.setdefault(dev.profile, []).append(("buses", bi, "devices", di, "profile"))
    profiles: dict[str, ModbusProfile | PanelProfile] = {}
    files: dict[str, Path] = {}
    known = available_profiles(config.profile_dirs)
    for name, where in wanted.items():
        file = find_profile(name, config.profile_dirs)
        if file is None:
            for p in where:
                report(
                    p, f"unknown profile {name!r}{suggest(name, known)} (known: {', '.join(known)})"
                )
            continue
        try:
            profiles[name] = load_profile(file)
            files[name] = file
        except ConfigError as e:
            problems.extend(e.problems)
    return profiles, files


def _cross_check(
    config: SiteConfig,
    profiles: Mapping[str, ModbusProfile | PanelProfile],
    report: typing.Callable[[PathKey, str], None],
) -> None:
    zone_ids = [z.id for z in config.zones]
    first_seen: dict[str, PathKey] = {}

    def unique_name(kind: str, name: str, p: PathKey) -> None:
        if name in first_seen:
            report(p, f"{kind} name {name!r} is already used at {format_path(first_seen[name])}")
        else:
            first_seen[name] = p

    def known_zone(zone: str, p: PathKey) -> None:
        if zone not in zone_ids:
            report(
                p, f"unknown zone {zone!r}{suggest(zone, zone_ids)} (zones: {', '.join(zone_ids)})"
            )

    for zi, z in enumerate(config.zones):
        unique_name("zone", z.id, ("zones", zi, "id"))

    ports: dict[str, PathKey] = {}
    for bi, bus in enumerate(config.buses):
        unique_name("bus", bus.name, ("buses", bi, "name"))
        endpoint = f"{bus.host}:{bus.port}" if isinstance(bus, TcpBus) else str(bus.port)
        if endpoint in ports:
            report(
                ("buses", bi, "host" if isinstance(bus, TcpBus) else "port"),
                f"{endpoint} is already used by {format_path(ports[endpoint])}: "
                "one bus per port (put all its devices under one bus)",
            )
        else:
            ports[endpoint] = ("buses", bi)
        if isinstance(bus, PanelBus):
            known_zone(bus.zone, ("buses", bi, "zone"))
            for key, zone in bus.points.items():
                known_zone(zone, ("buses", bi, "points", key))
            prof = profiles.get(bus.profile)
            if prof is not None and not isinstance(prof, PanelProfile):
                report(
                    ("buses", bi, "profile"),
                    f"profile {bus.profile!r} is a Modbus profile; "
                    "a panel bus needs a serial_panel profile",
                )
            continue
        ids: dict[int, int] = {}
        for di, dev in enumerate(bus.devices):
            here: PathKey = ("buses", bi, "devices", di)
            unique_name("device", dev.name, (*here, "name"))
            known_zone(dev.zone, (*here, "zone"))
            if isinstance(bus, RtuBus) and dev.device_id == 0:
                report((*here, "device_id"), "0 is the broadcast address; use 1-247")
            if dev.device_id in ids:
                report(
                    (*here, "device_id"),
                    f"device id {dev.device_id} is already used on bus {bus.name!r} "
                    f"by {bus.devices[ids[dev.device_id]].name!r}",
                )
            else:
                ids[dev.device_id] = di
            prof = profiles.get(dev.profile)
            if prof is not None and not isinstance(prof, ModbusProfile):
                report(
                    (*here, "profile"),
                    f"profile {dev.profile!r} is a serial panel profile; "
                    "it belongs on a bus of type panel",
                )

    for ci, cam in enumerate(config.cameras):
        here = ("cameras", ci)
        unique_name("camera", cam.name, (*here, "name"))
        known_zone(cam.zone, (*here, "zone"))
        _check_camera(cam, here, report)

    if config.gb26875 is not None:
        from agent.gb26875.mapping import check_components

        for path_, msg in check_components(config):
            report(path_, msg)

    model = config.vision.model
    if isinstance(model, Path) and not model.is_file():
        report(
            ("vision", "model"),
            f"model file {str(model)!r} not found; give the path of an .onnx model "
            "(its .json beside it; relative paths start at this file's folder) or use standard",
        )

    up = config.uplink
    if up is not None:
        if up.password_file is not None and not up.password_file.is_file():
            report(("uplink", "password_file"), f"file {str(up.password_file)!r} not found")
        if up.tls is not None:
            for key in ("ca_file", "cert_file", "key_file"):
                f: Path | None = getattr(up.tls, key)
                if f is not None and not f.is_file():
                    report(("uplink", "tls", key), f"file {str(f)!r} not found")
        try:
            up.topic_root.format(site_id="s", gateway_id="g")
        except (KeyError, IndexError, ValueError) as e:
            report(
                ("uplink", "topic_root"), f"only {{site_id}} and {{gateway_id}} may be used ({e})"
            )


def _raw_cross_check(
    data: dict[Any, Any], base: Path, report: typing.Callable[[PathKey, str], None]
) -> None:
    """The cross-references of ``_cross_check`` on the file's own values, for a
    file whose structure failed: unique zone, bus, device and camera names,
    known zones and profiles, device ids unique per bus. Skips whatever does
    not have the expected shape (the structural problems say why)."""

    def items(v: Any) -> list[tuple[int, dict[Any, Any]]]:
        return (
            [(i, x) for i, x in enumerate(v) if isinstance(x, dict)] if isinstance(v, list) else []
        )

    def text(d: dict[Any, Any], key: str) -> str | None:
        v = d.get(key)
        return v if isinstance(v, str) else None

    zone_ids = [z for _, zd in items(data.get("zones")) if (z := text(zd, "id"))]
    first_seen: dict[str, PathKey] = {}

    def unique_name(kind: str, name: str | None, p: PathKey) -> None:
        if name is None:
            return
        if name in first_seen:
            report(p, f"{kind} name {name!r} is already used at {format_path(first_seen[name])}")
        else:
            first_seen[name] = p

    def known_zone(zone: Any, p: PathKey) -> None:
        if isinstance(zone, str) and zone_ids and zone not in zone_ids:
            report(
                p, f"unknown zone {zone!r}{suggest(zone, zone_ids)} (zones: {', '.join(zone_ids)})"
            )

    raw_dirs = data.get("profile_dirs")
    dirs: list[Path] = []
    for x in raw_dirs if isinstance(raw_dirs, list) else []:
        d = Path(x).expanduser() if isinstance(x, str) and x and "\x00" not in x else None
        if d is not None and (d if d.is_absolute() else base / d).is_dir():
            dirs.append(d if d.is_absolute() else base / d)
    known = available_profiles(dirs)

    def known_profile(name: Any, p: PathKey) -> None:
        if isinstance(name, str) and name not in known:
            report(p, f"unknown profile {name!r}{suggest(name, known)} (known: {', '.join(known)})")

    for zi, zd in items(data.get("zones")):
        unique_name("zone", text(zd, "id"), ("zones", zi, "id"))
    for bi, bus in items(data.get("buses")):
        unique_name("bus", text(bus, "name"), ("buses", bi, "name"))
        known_profile(bus.get("profile"), ("buses", bi, "profile"))
        if bus.get("type") == "panel":
            known_zone(bus.get("zone"), ("buses", bi, "zone"))
            points = bus.get("points")
            for key, zone in points.items() if isinstance(points, dict) else ():
                known_zone(zone, ("buses", bi, "points", key))
            continue
        ids: dict[int, str] = {}
        for di, dev in items(bus.get("devices")):
            here: PathKey = ("buses", bi, "devices", di)
            unique_name("device", text(dev, "name"), (*here, "name"))
            known_zone(dev.get("zone"), (*here, "zone"))
            known_profile(dev.get("profile"), (*here, "profile"))
            dev_id = dev.get("device_id")
            if isinstance(dev_id, int) and not isinstance(dev_id, bool):
                if dev_id in ids:
                    report(
                        (*here, "device_id"),
                        f"device id {dev_id} is already used on this bus by {ids[dev_id]!r}",
                    )
                else:
                    ids[dev_id] = text(dev, "name") or f"devices[{di}]"
    for ci, cam in items(data.get("cameras")):
        unique_name("camera", text(cam, "name"), ("cameras", ci, "name"))
        known_zone(cam.get("zone"), ("cameras", ci, "zone"))


def _check_camera(
    cam: CameraConfig, here: PathKey, report: typing.Callable[[PathKey, str], None]
) -> None:
    if (
        camera_source_is_file(cam.source)
        and "%" not in cam.source
        and not Path(cam.source).exists()
    ):
        report((*here, "source"), f"file {cam.source!r} not found")
    if cam.masks and cam.resolution is None:
        report((*here, "resolution"), "masks are in pixels: give the camera's resolution [w, h]")
    if cam.expected_flames and cam.resolution is None:
        report(
            (*here, "resolution"),
            "expected_flames polygons are in pixels: give the camera's resolution [w, h]",
        )
    if cam.resolution is not None:
        w, h = cam.resolution
        for fi, flame in enumerate(cam.expected_flames):
            for pi, (x, y) in enumerate(flame.polygon):
                if not (0 <= x <= w and 0 <= y <= h):
                    report(
                        (*here, "expected_flames", fi, "polygon", pi),
                        f"corner ({x}, {y}) is outside the {w}x{h} frame",
                    )
    if cam.resolution is not None:
        w, h = cam.resolution
        for mi, poly in enumerate(cam.masks):
            for pi, (x, y) in enumerate(poly):
                if not (0 <= x <= w and 0 <= y <= h):
                    report(
                        (*here, "masks", mi, pi),
                        f"mask corner ({x}, {y}) is outside the {w}x{h} frame",
                    )
    if cam.max_gap_s < 1.0 / cam.detect_fps:
        report(
            (*here, "max_gap_s"),
            f"{cam.max_gap_s:g} s is shorter than one frame at detect_fps {cam.detect_fps:g}",
        )
