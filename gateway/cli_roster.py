"""`gateway roster [show|import FILE|export]`: the directory kept by the office.

`show` prints the roster in force: the store's (what the daemon uses), else the configured file's.
`import` and `export` talk to the running daemon (`PUT /v1/roster`, `GET /v1/roster/export`) with a
token that has the scope roster:write, so every change is checked, recorded in the audit trail
under the token's principal and in force on every instance at once.

`show` imports the loader and the store inside the function for the reason gateway/cli.py gives
(the CLI pays only for the sub-command it runs), not to dodge an import cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from contacts.model import Roster

_TYPES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "csv": "text/csv",
          "yaml": "application/yaml", "yml": "application/yaml"}


def add_arguments(ros: argparse.ArgumentParser) -> None:
    ros.add_argument("action", nargs="?", choices=["show", "import", "export"], default="show")
    ros.add_argument("file", nargs="?", help="import: the XLSX, CSV or YAML file; export: where to write "
                                            "(default: standard output)")
    ros.add_argument("--json", action="store_true")
    ros.add_argument("--role")
    ros.add_argument("--group")
    ros.add_argument("--format", choices=["xlsx", "csv", "yaml"], help="default: from the file name (xlsx)")
    ros.add_argument("--url", help="daemon URL (default from config, or GATEWAY_URL)")
    ros.add_argument("--token", help="bearer token with roster:write (default: GATEWAY_TOKEN or "
                                     "<data-dir>/admin.token)")


async def _stored(cfg: Any) -> Roster | None:
    from contacts.loader import load_roster_text
    from gateway.store.factory import make_store

    store = make_store(cfg)
    await store.open()
    try:
        doc = await store.current_roster()
    finally:
        await store.close()
    return None if doc is None else load_roster_text(doc.text, f"store revision {doc.revision}")


def show(cfg: Any, args: argparse.Namespace) -> int:
    from contacts.loader import load_roster
    from contacts.model import RosterError
    from gateway.store.records import StoreError

    url = str(cfg.store_url)
    try:
        # where no daemon has run there is nothing to read, and nothing should be created
        fresh = url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()
        roster = None if fresh else asyncio.run(_stored(cfg))
    except (StoreError, OSError) as exc:
        print(f"warning: store not readable ({exc}); showing the configured file", file=sys.stderr)
        roster = None
    try:
        roster = roster or load_roster(cfg.roster.path)
    except RosterError as exc:
        for m in exc.messages:
            print(f"error: {m}", file=sys.stderr)
        return 1
    units = [u for u in roster.units.values()
             if (not args.role or args.role in u.roles) and (not args.group or args.group in u.groups)]
    if args.json:
        print(json.dumps([u.to_json() for u in units], ensure_ascii=False, indent=2))
        return 0
    for u in units:
        nums = ", ".join(f"{c.raw or c.address} ({c.kind})" for c in u.contacts)
        persons = "; ".join(f"{p['role_label']} {p['name']} {p['mobile'] or p['landline']}"
                            for p in (p.to_json() for p in u.persons))
        print(f"{u.id:40} {u.name}  [{', '.join(u.roles)}]  {nums}" + (f"  | {persons}" if persons else ""))
    print(f"{len(units)} units, {sum(len(u.persons) for u in units)} persons", file=sys.stderr)
    return 0


def _request(cfg: Any, args: argparse.Namespace, method: str, path: str, body: bytes | None = None,
             content_type: str = "") -> tuple[int, bytes]:
    url = (args.url or os.environ.get("GATEWAY_URL") or cfg.base_url).rstrip("/")
    token = args.token or os.environ.get("GATEWAY_TOKEN", "")
    if not token:
        path_ = Path(cfg.data_dir) / "admin.token"
        token = path_.read_text().strip() if path_.exists() else ""
    headers = {"Authorization": f"Bearer {token}", **({"Content-Type": content_type} if content_type else {})}
    req = urllib.request.Request(url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except urllib.error.URLError as exc:
        print(f"cannot reach the daemon at {url}: {exc.reason}", file=sys.stderr)
        return 0, b""


def _fmt(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = Path(args.file or "").suffix.lower().lstrip(".")
    return "yaml" if suffix == "yml" else suffix if suffix in _TYPES else "xlsx"


def import_file(cfg: Any, args: argparse.Namespace) -> int:
    if not args.file:
        print("error: gateway roster import FILE", file=sys.stderr)
        return 2
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    fmt = _fmt(args)
    status, body = _request(cfg, args, "PUT", f"/v1/roster?format={fmt}", data, _TYPES[fmt])
    if status == 0:
        return 1
    answer = json.loads(body or b"{}")
    if status != 200:
        err = answer.get("error", {})
        problems = err.get("problems") or []
        print(f"error: {err.get('message', status)}" if not problems else
              f"error: {len(problems)} problem(s), nothing was changed:", file=sys.stderr)
        for p in problems:
            where = f"sheet {p['sheet']}" + (f", row {p['row']}" if p.get("row") else "") + \
                (f", column {p['column']}" if p.get("column") else "")
            print(f"  {where}: {p['message']}", file=sys.stderr)
        return 1
    changes = answer.get("changes", {})
    if not answer.get("changed"):
        print(f"unchanged: revision {answer['revision']}")
    else:
        print(f"ok: revision {answer['revision']}; persons +{len(changes.get('persons_added', []))} "
              f"-{len(changes.get('persons_removed', []))} ~{len(changes.get('persons_changed', []))}, "
              f"{changes.get('duty_entries', 0)} duty entries")
    return 0


def export_file(cfg: Any, args: argparse.Namespace) -> int:
    fmt = _fmt(args)
    status, body = _request(cfg, args, "GET", f"/v1/roster/export?format={fmt}")
    if status != 200:
        if status:
            print(f"error: {body.decode(errors='replace')}", file=sys.stderr)
        return 1
    if args.file:
        Path(args.file).write_bytes(body)
        print(f"wrote {args.file} ({len(body)} bytes, {fmt})", file=sys.stderr)
    else:
        sys.stdout.buffer.write(body)
    return 0


def run(cfg: Any, args: argparse.Namespace) -> int:
    if args.action == "import":
        return import_file(cfg, args)
    if args.action == "export":
        return export_file(cfg, args)
    return show(cfg, args)
