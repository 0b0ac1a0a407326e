"""The `gateway` command (design.md section 6).

Each sub-command imports what it needs inside its own function, on purpose and not to dodge an
import cycle: `gateway --help`, `check-config` or `send` must not pay for the daemon (importing
`gateway.cli` takes ~0.3 s; `gateway.app`, with aiohttp, the flows, the providers and the report
documents, ~1 s and ~950 modules), and a cron job running `gateway send` every minute feels it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import ConfigError, load_config

if TYPE_CHECKING:
    from contacts.model import Roster

BANNER = """\
============================================================================
  Zezhou emergency notification gateway - EMBEDDED DEFAULT (sandbox mode)
  NOTHING LEAVES THIS MACHINE: SMS and voice go to the local Twilio sandbox,
  webhooks to the local sink. Configure real providers with --config.
============================================================================"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (default: the embedded sandbox default)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gateway", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the daemon")
    _common(run)
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--data-dir")
    chk = sub.add_parser("check-config", help="validate config, roster and policy")
    _common(chk)
    ros = sub.add_parser("roster", help="the directory: show it, import the office's sheet, export it")
    _common(ros)
    from gateway.cli_roster import add_arguments

    add_arguments(ros)
    snd = sub.add_parser("send", help="post an event to a running daemon")
    _common(snd)
    snd.add_argument("--url", default=os.environ.get("GATEWAY_URL"), help="daemon URL (default from config)")
    snd.add_argument("--token", default=os.environ.get("GATEWAY_TOKEN"),
                     help="bearer token (default: GATEWAY_TOKEN or <data-dir>/admin.token)")
    snd.add_argument("--type", required=True)
    snd.add_argument("--level")
    snd.add_argument("--status", default="actual")
    snd.add_argument("--id")
    snd.add_argument("--supersedes")
    snd.add_argument("--headline")
    snd.add_argument("--body")
    snd.add_argument("--valid-from")
    snd.add_argument("--valid-until")
    for name, what in (("sign", "sign (签发) a warning held for sign-off: its deliveries go out now"),
                       ("reject", "reject a warning held for sign-off, with a reason: nothing is sent")):
        sig = sub.add_parser(name, help=what)
        _common(sig)
        sig.add_argument("event_id")
        sig.add_argument("--url", default=os.environ.get("GATEWAY_URL"), help="daemon URL (default from config)")
        sig.add_argument("--token", default=os.environ.get("GATEWAY_TOKEN"),
                         help="bearer token with events:sign (default: GATEWAY_TOKEN or <data-dir>/signer.token)")
        if name == "sign":
            sig.add_argument("--ref", help="文号 of the signed release")
        else:
            sig.add_argument("--reason", required=True)
    mig = sub.add_parser("migrate", help="apply store migrations, or copy a SQLite store to PostgreSQL")
    _common(mig)
    mig.add_argument("--from", dest="src", help="sqlite:///path to copy from (with --to)")
    mig.add_argument("--to", dest="dst", help="postgresql://... to copy into (an empty database)")
    sub.add_parser("demo", help="a throwaway sandbox daemon, an orange warning, live progress")
    aud = sub.add_parser("audit", help="the audit trail")
    _common(aud)
    aud.add_argument("action", choices=["verify"])
    aud.add_argument("--store", help="store URL (default from config)")
    return ap


def _load(args: argparse.Namespace, **overrides: Any) -> Any:
    try:
        return load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        for m in exc.messages:
            print(f"config error: {m}", file=sys.stderr)
        raise SystemExit(2) from exc


def cmd_run(args: argparse.Namespace) -> int:
    from gateway import logs
    from gateway.app import serve

    cfg = _load(args, **{"server.host": args.host, "server.port": args.port, "data_dir": args.data_dir})
    logs.configure(json_lines=None if cfg.log_format == "auto" else cfg.log_format == "json",
                   level=cfg.log_level)
    if cfg.sandbox.enabled:
        print(BANNER, flush=True)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(cfg))
    return 0


def units_without_actions(roster: Roster) -> list[str]:
    """One line per unit lacking an action line for a level or the lift: its messages then carry
    only the generic instruction (请落实本单位…响应措施)."""
    return [f"unit {u.id!r} ({u.name}) has no action for: {', '.join(u.actions.missing())}"
            for u in roster.units.values() if u.actions.missing()]


def cmd_check_config(args: argparse.Namespace) -> int:
    from contacts.loader import load_roster
    from contacts.model import RosterError
    from gateway.policy import PolicyError, load_policy
    from gateway.runtime import check_policy_against_roster, extra_contacts

    cfg = _load(args)
    problems: list[str] = []
    try:
        roster = load_roster(cfg.roster.path)
    except RosterError as exc:
        problems += [f"roster: {m}" for m in exc.messages]
        roster = None
    try:
        policy = load_policy(cfg.policy.path)
    except PolicyError as exc:
        problems += [f"policy: {m}" for m in exc.messages]
        policy = None
    if roster is not None and policy is not None:
        problems += check_policy_against_roster(policy, roster)
    if roster is not None:
        try:
            extra_contacts(cfg.roster.extra_contacts, roster, cfg.base_url)
        except ValueError as exc:
            problems.append(str(exc))
    if roster is not None:
        from gateway.acklinks import AckLinks
        from gateway.message_check import fixed_parts_problems
        from gateway.render import Renderer

        renderer = Renderer(signature=cfg.sms.signature, max_sms_segments=cfg.sms.max_segments)
        problems += fixed_parts_problems(renderer, roster, AckLinks(b"-", cfg.base_url).url_length())
    if policy is not None:
        from gateway.templates_cn import check_template_mapping  # issue 8: approved templates

        problems += check_template_mapping(cfg, policy)
    if cfg.auth.tokens_file:
        from gateway.auth import TokenBook, TokensError

        try:
            book = TokenBook.from_file(cfg.auth.tokens_file)
        except TokensError as exc:
            problems.append(f"tokens: {exc}")
        else:
            if policy is not None:
                for w in unsignable_levels(policy, book):
                    print(f"warning: {w}")
    if cfg.cap.trusted_certs:
        from gateway.cap_sig import load_certs

        try:
            if not load_certs(cfg.cap.trusted_certs):
                problems.append("cap.trusted_certs: no certificate in the files")
        except (OSError, ValueError) as exc:
            problems.append(f"cap.trusted_certs: {type(exc).__name__}: {exc}")
    if roster is not None:
        for w in roster.warnings:
            print(f"warning: roster: {w}")
        for w in units_without_actions(roster):
            print(f"warning: roster: {w}")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    assert roster is not None and policy is not None
    print(f"ok: {len(roster.units)} units, {len(roster.groups)} groups, {len(policy.model.rules)} policy rules")
    return 0


def unsignable_levels(policy: Any, book: Any) -> list[str]:
    """A warning level the policy holds for sign-off that no token could sign would never go out."""
    signers = {p.name for p in book.principals() if p.can("events:sign")}
    out = []
    for level in policy.model.signoff.levels:
        listed = policy.model.signoff.signers_for(level.value)
        if not (set(listed) & signers if listed else signers):
            out.append(f"policy signoff: no token with events:sign can sign {level.value} warnings"
                       f" (signers: {', '.join(listed) or 'any'}): they would wait until they expire")
    return out


def cmd_roster(args: argparse.Namespace) -> int:
    from gateway.cli_roster import run

    return run(_load(args), args)


def _token(args: argparse.Namespace, cfg: Any, file_name: str) -> str:
    """--token, else the token the embedded default wrote to <data-dir>/<file_name> (empty if none)."""
    if args.token:
        return str(args.token)
    path = Path(cfg.data_dir) / file_name
    return path.read_text().strip() if path.exists() else ""


def _post(url: str, path: str, body: dict[str, Any], token: str) -> int:
    """POST `body` as JSON to the daemon; print its answer. 0 on a 2xx, 1 on an error or no daemon."""
    req = urllib.request.Request(
        url + path, data=json.dumps(body, ensure_ascii=False).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            print(resp.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(), file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"cannot reach {url}: {exc.reason}", file=sys.stderr)
        return 1


def cmd_send(args: argparse.Namespace) -> int:
    cfg = _load(args)
    body: dict[str, Any] = {"type": args.type, "status": args.status}
    for key in ("level", "id", "supersedes", "headline", "body", "valid_from", "valid_until"):
        val = getattr(args, key)
        if val:
            body[key] = val
    return _post((args.url or cfg.base_url).rstrip("/"), "/v1/events", body, _token(args, cfg, "admin.token"))


def cmd_sign(args: argparse.Namespace) -> int:
    """`gateway sign` / `gateway reject`: 0 when the daemon took the decision, 1 with its error."""
    cfg = _load(args)
    body = {"ref": args.ref} if args.cmd == "sign" and args.ref else {"reason": args.reason} \
        if args.cmd == "reject" else {}
    verb = "sign" if args.cmd == "sign" else "reject"
    path = f"/v1/events/{urllib.parse.quote(args.event_id, safe='')}/{verb}"
    return _post((args.url or cfg.base_url).rstrip("/"), path, body, _token(args, cfg, "signer.token"))


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway import migrate

    return migrate.run(src=args.src, dst=args.dst, configured_url=lambda: str(_load(args).store_url))


def cmd_audit(args: argparse.Namespace) -> int:
    from gateway.audit import verify_chain
    from gateway.store.factory import make_store

    cfg = _load(args, **{"store.url": args.store})

    async def run() -> int:
        store = make_store(cfg)
        await store.open()
        try:
            report = await verify_chain(store)
        finally:
            await store.close()
        if report.broken_at is not None:
            print(f"audit chain BROKEN at record {report.broken_at}: {report.problem}", file=sys.stderr)
            return 1
        print(f"audit chain ok: {report.records} records")
        return 0

    return asyncio.run(run())


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import main as demo_main

    print(BANNER, flush=True)
    return demo_main()


COMMANDS = {"run": cmd_run, "check-config": cmd_check_config, "roster": cmd_roster, "send": cmd_send,
            "migrate": cmd_migrate, "audit": cmd_audit, "sign": cmd_sign, "reject": cmd_sign,
            "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return COMMANDS[args.cmd](args)
