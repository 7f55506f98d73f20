"""The site config: one YAML file describing one gateway and what it watches.

Every model forbids unknown keys and is frozen. Paths are resolved relative to
the config file's folder. See config/example-site.yaml for a commented example.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.events import DeviceKind
from agent.model import Name, Strict
from agent.siteconfig.policy import ZonePolicy

LogLevel = Literal["debug", "info", "warning", "error"]
MqttVersion = Literal["5", "3.1.1"]
Parity = Literal["N", "E", "O"]


def _yaml_on_off(v: object) -> object:
    """YAML 1.1 reads a bare `on`/`off` (and yes/no, true/false) as a boolean: take it as written."""
    if isinstance(v, bool):
        return "on" if v else "off"
    return v


EchoMode = Annotated[Literal["auto", "on", "off"], BeforeValidator(_yaml_on_off)]


def _resolve(v: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file's folder."""
    base = (info.context or {}).get("base_dir")
    v = v.expanduser()
    return v if v.is_absolute() or base is None else Path(base) / v


RelPath = Annotated[Path, AfterValidator(_resolve)]

# Kernel and device trees: files there are not storage (a state_dir of
# /proc/self or /dev/null was accepted and failed only at run time).
_NOT_STORAGE = (Path("/proc"), Path("/sys"), Path("/dev"))


def _storage_dir(v: Path) -> Path:
    real = Path(os.path.realpath(v))
    if any(real == p or p in real.parents for p in _NOT_STORAGE):
        raise ValueError(
            f"{v} is under /{real.parts[1]}, not a folder on a disk; "
            "use a folder such as /var/lib/firegate"
        )
    if real.exists() and not real.is_dir():
        raise ValueError(f"{v} exists and is not a folder; use a folder such as /var/lib/firegate")
    return v


StorageDir = Annotated[RelPath, AfterValidator(_storage_dir)]

CAMERA_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "usb:", "/dev/video")


def camera_source_is_file(source: str) -> bool:
    return not source.startswith(CAMERA_SCHEMES)


BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)

_VIDEO_INDEX = re.compile(r"(0|[1-9][0-9]{0,2})")  # V4L2 minors: 0-255
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
SOURCE_FORMS = (
    "rtsp://, rtsps://, http://, https:// with a host, usb:N or /dev/videoN (N 0-255), "
    "or a video file or image pattern"
)


def _check_source(v: str) -> None:
    """Refuse a camera source that cannot be opened as written (``usb:-1`` made
    OpenCV crash the agent); raises ValueError naming the forms accepted."""
    if len(v) > 2048:
        raise ValueError("a camera source is at most 2048 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise ValueError("a camera source cannot hold control characters (a line break?)")
    if v.startswith("usb:") or v.startswith("/dev/video"):
        n = v[4:] if v.startswith("usb:") else v[len("/dev/video") :]
        if not _VIDEO_INDEX.fullmatch(n) or int(n) > 255:
            form = "usb:N" if v.startswith("usb:") else "/dev/videoN"
            raise ValueError(
                f"{form} needs N from 0 to 255 (e.g. usb:0 for the first USB camera, "
                "see v4l2-ctl --list-devices)"
            )
        return
    scheme = _URL_SCHEME.match(v)
    if scheme is None:
        return  # a file or an image pattern; check-config checks that it exists
    if not v.startswith(CAMERA_SCHEMES[:4]):  # lower case, as the capture code reads it
        raise ValueError(f"{scheme[1]}:// is not a camera source here; use {SOURCE_FORMS}")
    try:
        url = urlsplit(v)
        url.port  # noqa: B018 (raises ValueError on a port that is not 0-65535)
    except ValueError as e:
        raise ValueError(f"not a usable URL ({e}); use {SOURCE_FORMS}") from None
    if not url.hostname or " " in v:
        raise ValueError(f"the URL has no host (or holds a space); use {SOURCE_FORMS}")


class SiteInfo(Strict):
    site_id: Name = Field(description="the school or building, as the monitoring centre knows it")
    gateway_id: Name = Field(description="this gateway within the site")
    name: str = Field(default="", max_length=200, description="human-readable site name")


class ZoneConfig(Strict):
    id: Name
    name: str = Field(default="", max_length=200)
    policy: ZonePolicy = Field(default_factory=ZonePolicy)


class DeviceConfig(Strict):
    """A Modbus device on a bus."""

    name: Name = Field(description="unique on the site; appears in every event")
    profile: Name = Field(description="device profile, a file name under config/profiles/")
    device_id: int = Field(ge=0, le=247, description="Modbus address (unit id) on the bus")
    zone: Name
    poll_interval_s: float = Field(default=1.0, ge=0.1, le=3600)
    kind: DeviceKind | None = Field(
        default=None, description="overrides the profile's device_kind (e.g. a generic detector)"
    )
    label: str = Field(
        default="", max_length=200, description="where it is, for people: 'room 12, by the door'"
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=5,
        description="reply timeout for this device only (a slow one); the bus's timeout_s if unset",
    )


class SerialPort(Strict):
    port: str = Field(
        min_length=1, max_length=256, description="e.g. /dev/ttyUSB0 or /dev/serial/by-id/..."
    )
    baudrate: int = 9600
    parity: Parity = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @field_validator("baudrate")
    @classmethod
    def _standard_baudrate(cls, v: int) -> int:
        if v not in BAUDRATES:
            raise ValueError(f"baud rate {v} is not one of {', '.join(map(str, BAUDRATES))}")
        return v


class BusTiming(Strict):
    timeout_s: float = Field(default=0.3, gt=0, le=5, description="reply timeout per request")
    retries: int = Field(default=1, ge=0, le=5, description="retries of a failed request")
    turnaround_s: float = Field(
        default=0.005, ge=0, le=1, description="quiet gap between two requests on the bus"
    )
    offline_after: int = Field(
        default=3, ge=1, le=100, description="consecutive failed polls before a device is offline"
    )
    offline_poll_s: float = Field(
        default=30.0, ge=1, le=3600, description="poll interval of an offline device"
    )


class RtuBus(SerialPort, BusTiming):
    """A Modbus RTU line (RS-485)."""

    type: Literal["rtu"]
    name: Name
    echo: EchoMode = Field(
        default="auto",
        title="local echo of the RS-485 adapter",
        description="auto: learn from the first reads whether the adapter echoes what the gateway "
        "sends, and discard the echo if it does; on: it echoes, always discard it (should it not "
        "echo, a single write fails rather than being taken as done); off: never discard (warns "
        "if it echoes)",
    )
    devices: tuple[DeviceConfig, ...] = Field(min_length=1)


class TcpBus(BusTiming):
    """A Modbus TCP host (or a TCP-to-RTU gateway)."""

    type: Literal["tcp"]
    name: Name
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=502, ge=1, le=65535)
    devices: tuple[DeviceConfig, ...] = Field(min_length=1)


class PanelBus(SerialPort):
    """A fire alarm panel's printer/CRT output on a plain serial line."""

    type: Literal["panel"]
    name: Name = Field(description="the panel's name; the source of its events")
    profile: Name = Field(description="serial panel profile under config/profiles/")
    zone: Name = Field(description="zone for points not listed in `points`")
    points: dict[str, Name] = Field(
        default_factory=dict, description="'loop/address' (e.g. '1/23') -> zone"
    )
    silence_fault_s: float | None = Field(
        default=None,
        ge=60,
        le=86400,
        description="report a fault if the panel prints nothing this long (None: never)",
    )

    @field_validator("points")
    @classmethod
    def _point_keys(cls, v: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, zone in v.items():
            loop, sep, addr = key.partition("/")
            if not sep or not loop.isdigit() or not addr.isdigit():
                raise ValueError(f"point {key!r} must be 'loop/address', e.g. '1/23'")
            norm = f"{int(loop)}/{int(addr)}"  # '01/023' and '1/23' are the same point
            if norm in out:
                raise ValueError(f"point {key!r} is listed twice (as {norm!r})")
            out[norm] = zone
        return out


Bus = Annotated[RtuBus | TcpBus | PanelBus, Field(discriminator="type")]

Point2 = tuple[int, int]


class ExpectedFlame(Strict):
    """Where a camera sees flames that belong there (a kitchen's hobs, a lab's burners)."""

    polygon: tuple[Point2, ...] = Field(
        title="Where the flames are",
        description="corners [x, y] in pixels at the camera's resolution (at least 3)",
    )
    max_frac: float = Field(
        default=0.02,
        gt=0,
        le=0.5,
        title="Largest expected flame",
        description="a fire region centred inside the polygon and at most this fraction of "
        "the frame is ignored; once larger it counts, with a note that it grew past its "
        "expected-flame mask",
    )

    @field_validator("polygon")
    @classmethod
    def _corners(cls, v: tuple[Point2, ...]) -> tuple[Point2, ...]:
        if len(v) < 3:
            raise ValueError(f"{len(v)} corners; a polygon needs at least 3")
        return v


class CameraConfig(Strict):
    name: Name
    zone: Name
    source: str = Field(
        min_length=1,
        description="rtsp://..., http(s)://..., a video file, an image pattern "
        "(frames/%04d.jpg) or usb:N / /dev/videoN",
    )
    resolution: tuple[int, int] | None = Field(
        default=None, description="width, height in pixels; needed when masks are given"
    )
    detect_fps: float = Field(default=2.0, gt=0, le=30, description="frames analysed per second")
    max_gap_s: float = Field(
        default=5.0, gt=0, le=60, description="longest time a camera may go unanalysed"
    )
    stale_after_s: float = Field(
        default=20.0, ge=1, le=90, description="no frame this long: camera fault"
    )
    frozen_after_s: float = Field(
        default=60.0, ge=5, le=600, description="identical frames this long: camera fault"
    )
    masks: tuple[tuple[Point2, ...], ...] = Field(
        default=(), description="ignore polygons, each a list of [x, y] pixel corners"
    )
    expected_flames: tuple[ExpectedFlame, ...] = Field(
        default=(),
        title="Expected flames",
        description="polygons where flames belong (hobs, burners), each with a size limit: "
        "a fire region inside stays ignored while under its limit",
    )
    # Video confirmation (vision/vote.py). Defaults suit the shipped model at 2 fps.
    fire_threshold: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="mean fire score that confirms a detection (None: the model's operating point)",
    )
    smoke_threshold: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="mean smoke score that confirms a detection (None: the model's operating point)",
    )
    hold_ratio: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="while a detection is ongoing its threshold is this fraction of the start threshold",
    )
    vote_window_frames: int = Field(
        default=6, ge=1, le=120, description="analysed frames in the confirmation vote"
    )
    vote_min_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="fraction of the window's frames that must show an overlapping region",
    )
    min_region_area_px: int = Field(
        default=0,
        ge=0,
        le=8192 * 8192,
        description="smaller regions (frame pixels, w*h) are not counted",
    )
    update_interval_s: float = Field(
        default=5.0,
        ge=0.5,
        le=600,
        description="least time between updates of an ongoing detection",
    )
    min_change_grey: float = Field(
        default=2.0,
        ge=0,
        le=255,
        description="a region starts a detection only where the picture differs from the slow "
        "background by this mean grey level (0: no change needed)",
    )
    change_background_s: float = Field(
        default=30.0, ge=1, le=3600, description="time constant of that slow background"
    )
    open_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="longest wait to open the source or read one frame"
    )
    reconnect_max_s: float = Field(
        default=30.0, ge=1, le=600, description="longest wait between reconnection attempts"
    )
    # Small and steady is not fire (vision/vote.py).
    small_flame_max_frac: float = Field(
        default=0.0,
        ge=0,
        le=1,
        title="Largest candle-sized flame",
        description="a fire region at most this fraction of the frame (a candle) starts a "
        "detection only once it has grown 1.5x (0: off, the default: it delays small real "
        "fires; steady_end_s already keeps a steady candle from a camera-alone alarm)",
    )
    steady_flame_max_frac: float = Field(
        default=0.1,
        ge=0,
        le=1,
        title="Largest controlled flame",
        description="a fire region at most this fraction of the frame (a fireplace, a hob) "
        "whose size has not trended up 1.5x over steady_end_s (its last third of looks against "
        "its first, or, restarted where one was so ended, against that hold) is ended as "
        "steady, not fire, however it flickers; a larger one only when "
        "it did not flicker (growth without movement is not growth)",
    )
    steady_smoke_max_frac: float = Field(
        default=0.02,
        ge=0,
        le=1,
        title="Largest wisp of smoke",
        description="a smoke region at most this fraction of the frame (about four of the "
        "model's cells) whose size has not trended up 1.5x over steady_end_s is ended as "
        "steady, not smoke, however it drifts: a patch of sunlight, a shadow, a kettle's "
        "steam; a fire's smoke spreads (0: off, any drifting smoke holds)",
    )
    steady_end_s: float = Field(
        default=15.0,
        ge=0,
        le=600,
        title="Steady region hold",
        description="a detection whose region did not move (drift, flicker) within this "
        "time, or moved only early in it and not in its last third (a person walked through "
        "it and left), is ended as steady, not fire or smoke, even if it grew (a picture that "
        "does not change grows only at the thresholds); until it moves, growth is not "
        "reported; keep it under the zone's video_only_s (0: off)",
    )
    motion_grey: float = Field(
        default=1.0,
        gt=0,
        le=255,
        title="Movement in a region",
        description="mean grey-level change from one analysed frame to the next inside a "
        "region that counts as movement (flicker, drift)",
    )
    # A burst of frames on a candidate (vision/change.py burst_movement).
    burst_s: float = Field(
        default=1.0,
        ge=0,
        le=5,
        title="Burst on a candidate",
        description="when a region first becomes a candidate, the frames of this many seconds "
        "at the camera's own rate are looked at for movement in it (flicker, drift); a region "
        "that does not move is not confirmed (a place found still is looked at again every "
        "10 s while a region is there); 0: off, only the steady_end_s rule",
    )
    burst_max_frames: int = Field(
        default=30,
        ge=3,
        le=120,
        title="Frames in a burst",
        description="at most this many frames of a burst are taken (each cropped around the "
        "candidate and shrunk to 64 pixels a side)",
    )
    burst_moving_frac: float = Field(
        default=0.02,
        gt=0,
        le=1,
        title="Movement in a burst",
        description="share of the region's pixels whose grey level must vary above sensor noise "
        "over the burst for the region to count as moving",
    )
    # The camera's own scene (vision/scene.py), learned at commissioning and while quiet.
    scene_model: bool = Field(
        default=True,
        title="Scene model",
        description="a cell counts only where its score rises above what this camera's normal "
        "scene scores there, in the same lighting (false: the model's threshold alone)",
    )
    scene_margin: float = Field(
        default=0.15,
        gt=0,
        le=1,
        title="Scene margin",
        description="how far above its normal (mean + 3 spreads) a cell's score must rise",
    )
    scene_learn_frames: int = Field(
        default=60,
        ge=10,
        le=100_000,
        title="Frames to learn a lighting state",
        description="analysed frames a lighting state needs before it is judged by its own normal",
    )
    scene_adapt_s: float = Field(
        default=7200.0,
        ge=600,
        le=30 * 86400,
        title="Scene adaptation time",
        description="time constant of the slow learning while nothing is alarmed",
    )

    @field_validator("source")
    @classmethod
    def _resolve_file(cls, v: str, info: ValidationInfo) -> str:
        _check_source(v)
        if camera_source_is_file(v):
            return str(_resolve(Path(v), info))
        return v

    @field_validator("masks")
    @classmethod
    def _polygons(cls, v: tuple[tuple[Point2, ...], ...]) -> tuple[tuple[Point2, ...], ...]:
        for i, poly in enumerate(v):
            if len(poly) < 3:
                raise ValueError(f"mask {i} has {len(poly)} corners; a polygon needs at least 3")
        return v

    @field_validator("resolution")
    @classmethod
    def _positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and (v[0] < 16 or v[1] < 16 or v[0] > 8192 or v[1] > 8192):
            raise ValueError(f"resolution {v[0]}x{v[1]} is outside 16..8192 pixels")
        return v


class TlsConfig(Strict):
    ca_file: RelPath = Field(description="CA certificate(s) that signed the broker's certificate")
    cert_file: RelPath | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: RelPath | None = Field(default=None, description="client private key")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class UplinkConfig(Strict):
    host: str = Field(min_length=1, max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535, description="1883, or 8883 with TLS")
    client_id: str | None = Field(
        default=None, max_length=128, description="default: firegate-<site_id>-<gateway_id>"
    )
    username: str | None = Field(default=None, max_length=256)
    password: SecretStr | None = Field(default=None, max_length=1024)
    password_file: RelPath | None = Field(default=None, description="read the password from here")
    tls: TlsConfig | None = None
    topic_root: str = Field(
        default="firegate/{site_id}/{gateway_id}",
        min_length=1,
        max_length=200,
        description="prefix of every topic; {site_id} and {gateway_id} are filled in",
    )
    keepalive_s: int = Field(default=30, ge=5, le=600)
    heartbeat_s: float = Field(default=60.0, ge=5, le=3600)
    publish_timeout_s: float = Field(default=10.0, gt=0, le=120, description="wait for PUBACK")
    downlink: bool = Field(default=False, description="accept snapshot/state requests")
    reconnect_min_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="shortest wait before a reconnect; also the first retry of a refused topic",
    )
    reconnect_window_s: float = Field(
        default=40.0,
        ge=1,
        le=600,
        description="the first reconnect after a lost link comes at a random moment within "
        "this window (full jitter), so a province's gateways do not return in the same "
        "second after a broker restart; it doubles with each failed try up to "
        "reconnect_max_s. A stored fire alarm does not wait for it",
    )
    reconnect_max_s: float = Field(
        default=40.0,
        gt=0,
        le=3600,
        description="longest delay between reconnect attempts; every gateway is back "
        "within this long of the broker's return (plus its connect), whatever the outage",
    )
    inflight_max: int = Field(
        default=16, ge=1, le=100, description="decisions published and awaiting PUBACK at once"
    )
    mqtt_version: MqttVersion = Field(
        default="5",
        title="MQTT protocol version",
        description="5 (default): the broker's PUBACK says whether it accepted each message, "
        "so a decision its ACL refuses stays in the outbox and is reported; "
        "3.1.1: only for brokers without MQTT 5, where a refused publish is "
        "acknowledged like a delivered one and cannot be detected",
    )

    @field_validator("topic_root")
    @classmethod
    def _topic_root(cls, v: str) -> str:
        only = f"topic_root {v!r}: only {{site_id}} and {{gateway_id}} may be filled in"
        try:
            # plain fields only: a format spec ({site_id:>999999999}) would build a
            # string of any size, a conversion ({site_id!r}) quotes
            for _, field, spec, conversion in string.Formatter().parse(v):
                if field is not None and (
                    field not in ("site_id", "gateway_id") or spec or conversion
                ):
                    shown = "{" + field + (f"!{conversion}" if conversion else "")
                    shown += (f":{spec}" if spec else "") + "}"
                    raise ValueError(f"{only}, exactly so written ({shown[:40]} is not)")
            probe = v.format(site_id="s", gateway_id="g")
        except (KeyError, IndexError, ValueError) as e:
            msg = str(e) if str(e).startswith(only) else f"{only} ({e})"
            raise ValueError(msg) from None
        if (
            not probe
            or "+" in probe
            or "#" in probe
            or probe.startswith("/")
            or probe.endswith("/")
        ):
            raise ValueError(
                f"topic_root {v!r} must be a topic without wildcards (+, #) "
                "and without a leading or trailing '/'"
            )
        return v

    @field_validator("mqtt_version", mode="before")
    @classmethod
    def _mqtt_version(cls, v: object) -> object:
        # YAML reads `mqtt_version: 5` (or 5.0) as a number: the same answer as "5"
        return "5" if v == 5 and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _one_password(self) -> UplinkConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls else 1883)


ADDRESS_48_MAX = (1 << 48) - 1


class CentreComponent(Strict):
    """How the monitoring centre knows one device or camera (GB/T 26875.3)."""

    address: str | None = Field(
        default=None,
        pattern=r"^\d{1,5}/\d{1,5}$",
        description="'zone/position' as the centre's records have it, e.g. '10/2' "
        "(default: bus number / Modbus id; panels: loop/address; cameras: 200/camera number)",
    )
    component_type: int | None = Field(
        default=None,
        ge=0,
        le=255,
        description="GB/T 26875.3 component type, e.g. 42 point optical smoke detector "
        "(default: from the device kind)",
    )

    @field_validator("address")
    @classmethod
    def _fits(cls, v: str | None) -> str | None:
        if v is not None and any(int(x) > 0xFFFF for x in v.split("/")):
            raise ValueError(f"address {v!r}: zone and position are each at most 65535")
        return v


class Gb26875Config(Strict):
    """An uplink to an urban fire remote-monitoring centre over GB/T 26875.3-2011
    (TCP), beside or instead of MQTT. See docs/gb26875.md."""

    host: str = Field(min_length=1, description="the monitoring centre's address")
    port: int = Field(ge=1, le=65535, description="the centre's TCP port (it assigns one)")
    source_address: int = Field(
        ge=0, le=ADDRESS_48_MAX, description="this gateway's address, as the centre assigned it"
    )
    destination_address: int = Field(
        default=0, ge=0, le=ADDRESS_48_MAX, description="the centre's own address"
    )
    user_version: int = Field(
        default=1, ge=0, le=255, description="second byte of the protocol version (major is 1)"
    )
    utc_offset_min: int = Field(
        default=480,
        ge=-720,
        le=840,
        description="time labels are local time this many minutes east of UTC (480: China)",
    )
    system_type: int = Field(
        default=1, ge=0, le=255, description="system type of the facilities (1: fire alarm)"
    )
    system_address: int = Field(default=1, ge=0, le=255, description="system address")
    confirm_timeout_s: float = Field(
        default=10.0, gt=0, le=60, description="wait for the centre's confirm, then send again"
    )
    retries: int = Field(
        default=3, ge=0, le=10, description="sends again after a timeout or a deny"
    )
    heartbeat_s: float = Field(
        default=30.0, ge=1, le=600, description="an empty send-data frame when idle this long"
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, le=120)
    reconnect_min_s: float = Field(
        default=1.0, gt=0, le=60, description="first reconnect delay; doubles up to reconnect_max_s"
    )
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)
    components: dict[Name, CentreComponent] = Field(
        default_factory=dict, description="device or camera name -> how the centre knows it"
    )


class VisionConfig(Strict):
    model: Literal["standard"] | RelPath = Field(
        default="standard",
        description='"standard": the shipped model (vision/models/firenet.onnx); or the '
        "path of another .onnx model with its .json beside it",
    )

    @field_validator("model")
    @classmethod
    def _onnx(cls, v: str | Path) -> str | Path:
        if isinstance(v, Path) and v.suffix != ".onnx":
            raise ValueError(f"{v}: a model file ends in .onnx (or use standard)")
        return v


class StorageConfig(Strict):
    state_dir: StorageDir = Field(
        default=Path("/var/lib/firegate"), description="outbox and history (a folder on a disk)"
    )
    outbox_max_rows: int = Field(default=100_000, ge=100, le=10_000_000)
    outbox_max_mb: float = Field(default=256.0, ge=1, le=65536)
    history_days: int = Field(
        default=400, ge=30, le=3650, description="GB/T 45839 5.9.5: at least a year"
    )


class LoggingConfig(Strict):
    level: LogLevel = "info"
    modules: dict[str, LogLevel] = Field(
        default_factory=dict, description="per-module level, e.g. drivers: debug"
    )


class EngineConfig(Strict):
    stats_interval_s: float = Field(default=86400.0, ge=60, le=7 * 86400)
    tick_s: float = Field(default=0.5, ge=0.05, le=5, description="how often time-based rules run")
    nuisance_prone_count: int = Field(
        default=3,
        ge=1,
        le=10_000,
        description="a detector with this many held-back nuisances in one stats interval is "
        "named nuisance-prone in the stats decision",
    )
    nuisance_log_max_mb: float = Field(
        default=8.0, gt=0, le=1024, description="size of the local nuisance log before rotation"
    )


class HealthConfig(Strict):
    """Self-monitoring: the systemd watchdog, the status file and opt-in metrics."""

    stall_after_s: float = Field(
        default=60.0,
        ge=5,
        le=3600,
        description="a part whose loop shows no progress this long is stalled: the systemd "
        "watchdog is no longer fed, so systemd restarts the agent",
    )
    status_interval_s: float = Field(
        default=5.0, ge=1, le=300, description="how often the status file is rewritten"
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1024,
        le=65535,
        description="serve Prometheus metrics on 127.0.0.1:PORT (None: off); never on other "
        "addresses: reach it through an SSH tunnel",
    )


class SiteConfig(Strict):
    version: Literal[1] = 1
    site: SiteInfo
    zones: tuple[ZoneConfig, ...] = Field(min_length=1)
    buses: tuple[Bus, ...] = ()
    cameras: tuple[CameraConfig, ...] = ()
    uplink: UplinkConfig | None = Field(
        default=None, description="none: decisions stay in the outbox"
    )
    gb26875: Gb26875Config | None = Field(
        default=None,
        description="GB/T 26875.3 uplink to a fire remote-monitoring centre (beside MQTT or alone)",
    )
    vision: VisionConfig = Field(default_factory=VisionConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    profile_dirs: tuple[RelPath, ...] = Field(
        default=(), description="extra folders of device profiles, searched before the built-in"
    )

    # ----------------------------------------------------------------- lookups

    def zone(self, zone_id: str) -> ZoneConfig:
        for z in self.zones:
            if z.id == zone_id:
                return z
        raise KeyError(zone_id)

    def devices(self) -> list[tuple[RtuBus | TcpBus, DeviceConfig]]:
        return [(b, d) for b in self.buses if isinstance(b, RtuBus | TcpBus) for d in b.devices]

    def panels(self) -> list[PanelBus]:
        return [b for b in self.buses if isinstance(b, PanelBus)]
