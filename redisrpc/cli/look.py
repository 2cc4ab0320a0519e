"""``redisrpc list`` and ``redisrpc describe``: what is alive, and what it offers."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from ..client.discovery import discover
from ..client.signature import signature_from_params
from ..client.sync import description
from ..core.cancel import running_calls_of
from ..core.keys import queue_name
from ..notebook import rst
from .common import (
    connect_proxy,
    fmt_ago,
    fmt_duration,
    fmt_table,
    open_transport,
    services_on,
)

__all__ = ["cmd_describe", "cmd_list"]


def cmd_list(args: argparse.Namespace) -> int:
    """List the live servers: class, instances, host, uptime, queue, what runs."""
    transport = open_transport(args)
    services = discover(transport, prefix=args.prefix)
    queues = {s.name: queue_name(s.name, cluster=transport.cluster) for s in services}
    found = transport.run(running_calls_of(list(queues.values()))) if services else {}
    running = {name: found[queue] for name, queue in queues.items()}
    if args.json:
        print(
            json.dumps(
                [
                    {**dataclasses.asdict(s), "last_seen": s.last_seen, "running": running[s.name]}
                    for s in services
                ],
                indent=2,
            )
        )
        return 0
    if not services:
        print(f"no live servers registered on {transport.location} (prefix {args.prefix!r})")
        return 0
    now = transport.now_ms() / 1000.0
    rows = []
    for s in services:
        first = s.instances[0]
        where = f"{first.host}:{first.pid}"
        if len(s.instances) > 1:
            where += f" +{len(s.instances) - 1} more"
        rows.append(
            [
                s.name,
                s.class_name,
                str(len(s.instances)),
                where,
                fmt_duration(now - s.started_at),
                str(s.queue_depth),
                fmt_ago(now - s.last_seen),
                _running(running[s.name], now),
            ]
        )
    header = ["NAME", "CLASS", "INSTANCES", "HOST:PID", "UPTIME", "QUEUE", "LAST SEEN", "RUNNING"]
    print(fmt_table(header, rows))
    return 0


def _running(calls: list[dict[str, Any]], now: float) -> str:
    """What a service runs now: the oldest call (method, elapsed, caller), and how many more."""
    if not calls:
        return "-"
    first = calls[0]
    since = first.get("since")
    elapsed = f" {fmt_duration(now - since)}" if isinstance(since, (int, float)) else ""
    text = f"{first.get('method', '?')}(){elapsed} by {first.get('caller') or '?'}"
    return text + (f" +{len(calls) - 1} more" if len(calls) > 1 else "")


def _signature(entry: dict[str, Any]) -> str:
    text = str(signature_from_params(entry.get("params"), entry.get("returns")))
    return text if entry.get("signature_known", True) else f"{text}  (signature unknown)"


def _indented(doc: str, pad: str = "      ") -> list[str]:
    # reST inline markup (:meth:`add`, double backquotes) shown as what it names.
    return [pad + line if line else "" for line in rst.to_text(doc).strip().splitlines()]


def cmd_describe(args: argparse.Namespace) -> int:
    """Print a remote object's doc, methods with signatures, and properties."""
    transport = open_transport(args)
    proxy = connect_proxy(args, transport, args.name)
    found = description(proxy)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if found is None:
        print(
            f"{args.name}: answers, but does not describe itself"
            " (an original RedisRPC server?); any method name can be called"
        )
        return 0
    lines = [
        f"{args.name}: {found.get('class', '?')} (module {found.get('module', '?')}),"
        f" served by {found.get('server', '?')}, {found.get('library', '?')}"
    ]
    if found.get("doc"):
        lines += ["", *_indented(str(found["doc"]), "  ")]
    lines += ["", "Methods:"]
    for entry in found.get("methods", []) or [{"name": "(none)", "params": []}]:
        lines.append(f"  {entry['name']}{_signature(entry)}")
        lines += _indented(str(entry.get("doc") or ""))
    lines += ["", "Properties:"]
    if not found.get("properties"):
        lines.append("  (none)")
    for entry in found.get("properties", []):
        annotation = f": {entry['annotation']}" if entry.get("annotation") else ""
        access = "read-only" if entry.get("readonly") else "read-write"
        lines.append(f"  {entry['name']}{annotation}  ({access})")
        lines += _indented(str(entry.get("doc") or ""))
    service = services_on(transport, str(found.get("registry_prefix") or args.prefix)).get(
        args.name
    )
    if service is not None:
        now = transport.now_ms() / 1000.0
        lines += ["", f"Instances ({len(service.instances)}, queue depth {service.queue_depth}):"]
        for i in service.instances:
            lines.append(
                f"  {i.id}  up {fmt_duration(now - i.started_at)}, last seen"
                f" {fmt_ago(now - i.last_seen)}, {i.library}, protocol {i.protocol}"
            )
    print("\n".join(lines))
    return 0
