"""`firegate check-config PATH`: validate a site config and summarise it.

Exit 0 with a one-screen summary when valid (and a warning for a password
sent without TLS); exit 2 with every problem (file:line:column: key.path:
what is wrong) when not. Everything printed goes through ``agent.logs.redact``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.logs import redact, redact_url
from agent.siteconfig import ConfigError, LoadedSite, load_site
from agent.siteconfig.models import PanelBus, RtuBus, TcpBus


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check-config",
        help="check a site config file and print a summary",
        description="Check a site config and the device profiles it uses. "
        "Exit 0 when valid, 2 with every problem found when not.",
    )
    p.add_argument("path", type=Path, help="site config file (YAML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        site = load_site(args.path)
    except ConfigError as e:
        n = len(e.problems)
        print(f"{args.path}: {n} problem{'s' if n != 1 else ''} found", file=sys.stderr)
        for p in e.problems:
            print(redact(f"  {p}"), file=sys.stderr)
        return 2
    print(redact(summary(site)))
    for w in warnings(site):
        print(redact(f"warning: {w}"), file=sys.stderr)
    return 0


def warnings(site: LoadedSite) -> list[str]:
    """What is valid but unwise: said, not refused."""
    out = []
    up = site.config.uplink
    if up is not None and up.tls is None and (up.password or up.password_file):
        out.append(
            f"{site.path}: uplink: the MQTT password goes to {up.host}:{up.effective_port} "
            "without TLS, readable by anyone on the network path; add uplink.tls "
            "(ca_file, port 8883) unless the broker is on this machine or a trusted link"
        )
    return out


def summary(site: LoadedSite) -> str:
    c = site.config
    out = [f"{site.path}: OK"]
    title = f" ({c.site.name})" if c.site.name else ""
    out.append(f"site {c.site.site_id}, gateway {c.site.gateway_id}{title}")
    out.append(f"zones ({len(c.zones)}): {', '.join(z.id for z in c.zones)}")
    out.append(f"buses ({len(c.buses)}):")
    for b in c.buses:
        if isinstance(b, RtuBus):
            line = f"{b.port} {b.baudrate} 8{b.parity}{b.stopbits}"
            if b.echo != "auto":
                line += f", echo {b.echo}"
        elif isinstance(b, TcpBus):
            line = f"{b.host}:{b.port}"
        else:
            line = f"{b.port} {b.baudrate} 8{b.parity}{b.stopbits}, profile {b.profile}"
        out.append(f"  {b.name:<14} {b.type:<5} {line}")
        if isinstance(b, PanelBus):
            out.append(f"    panel points mapped: {len(b.points)}, default zone {b.zone}")
            continue
        for d in b.devices:
            prof = site.modbus_profile(d.profile)
            kind = (d.kind or prof.device_kind).value
            out.append(
                f"    #{d.device_id:<3} {d.name:<22} {kind:<17} {d.zone:<14} "
                f"every {d.poll_interval_s:g} s  ({prof.vendor} {prof.model})"
            )
    model = c.vision.model
    model_text = f"model {model}" if isinstance(model, str) else f"model file {model}"
    out.append(f"cameras ({len(c.cameras)}){f', {model_text}' if c.cameras else ''}:")
    for cam in c.cameras:
        masks = f", {len(cam.masks)} mask(s)" if cam.masks else ""
        out.append(
            f"  {cam.name:<14} {cam.zone:<14} {cam.detect_fps:g} fps{masks}  {redact_url(cam.source)}"
        )
    up = c.uplink
    if up is None and c.gb26875 is not None:
        out.append("uplink: no MQTT (decisions go to the GB/T 26875.3 centre only)")
    elif up is None:
        out.append("uplink: none (decisions stay in the outbox)")
    else:
        scheme = "mqtts" if up.tls else "mqtt"
        auth = f", user {up.username}" if up.username else ""
        if up.password is not None or up.password_file is not None:
            auth += " (password set)"
        cid = up.client_id or f"firegate-{c.site.site_id}-{c.site.gateway_id}"
        out.append(
            f"uplink: {scheme}://{up.host}:{up.effective_port} as {cid}{auth}, MQTT {up.mqtt_version}"
        )
    if c.gb26875 is not None:
        from agent.gb26875.mapping import summary_lines

        out.extend(summary_lines(site))
    s = c.storage
    out.append(
        f"storage: {s.state_dir} (outbox cap {s.outbox_max_rows} decisions / {s.outbox_max_mb:g} MB)"
    )
    return "\n".join(out)
