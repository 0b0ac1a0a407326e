"""The daemon: wires config, store, roster, policy, channels, dispatcher and the HTTP API.

Roster and policy live in one immutable `Runtime` that SIGHUP replaces atomically: a bad file
is rejected and the running one stays.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import logs
from gateway.acklinks import AckLinks
from gateway.alertmanager import AlertmanagerIntake
from gateway.api.common import GATEWAY
from gateway.api.errors import error_middleware
from gateway.api.routes import ROUTE_TABLES
from gateway.audit import AuditTrail
from gateway.auth import TokenBook
from gateway.cap import CapError
from gateway.cap_feed_poller import CapFeedPoller, Refused
from gateway.cap_intake import CapIntake
from gateway.config import Config
from gateway.dispatcher import ChannelSlot, Dispatcher
from gateway.flows.acks import Acknowledgements
from gateway.flows.directory import Directory, DirectoryDesk
from gateway.flows.errors import DomainError
from gateway.flows.escalation import Escalation
from gateway.flows.fallback import Fallback
from gateway.flows.intake import Intake
from gateway.flows.people import PersonNotices, list_links
from gateway.flows.public import PublicDesk
from gateway.flows.receipts import ProviderReceipts, receipt_rules
from gateway.flows.reminders import Reminders
from gateway.flows.report_docs import ReportDocs
from gateway.flows.report_schedule import ReportSchedule
from gateway.flows.reports import ReportDesk
from gateway.flows.signoff import SignOff
from gateway.flows.signoff_notices import SignoffNotices
from gateway.flows.signoff_reports import UpwardReports
from gateway.jobs.registry import register as register_jobs
from gateway.jobs.scheduler import Scheduler
from gateway.metrics import Metrics
from gateway.planner import sharing_units
from gateway.policy import Policy, load_policy
from gateway.providers.registry import delivery_meta
from gateway.providers.twilio.wiring import reload_twilio
from gateway.render import Renderer
from gateway.reportlinks import ReportLinks
from gateway.retry import Backoff
from gateway.runtime import Runtime, load_runtime
from gateway.store.base import Store
from gateway.store.factory import make_store
from gateway.wiring import build_channels

if TYPE_CHECKING:
    from channels.twilio import TwilioApi, TwilioConfig
    from contacts.model import Roster
    from gateway.providers.aliyun.receipts import AliyunReceipts
    from gateway.sandbox import Sandbox

log = logs.get("gateway")


class Gateway:
    runtime: Runtime

    def __init__(self, config: Config):
        self.config = config
        self.metrics = Metrics()
        self.store: Store = make_store(config)
        self.audit = AuditTrail(self.store)
        self.acks = Acknowledgements(
            store=self.store, metrics=self.metrics, audit=self.audit,
            sharing=lambda unit_id, address: sharing_units(self.runtime.roster, unit_id, address))
        self.tokens = TokenBook({})
        self.renderer = Renderer(signature=config.sms.signature, max_sms_segments=config.sms.max_segments)
        self.runner: web.AppRunner | None = None
        self.port = config.server.port
        self.base_url = config.base_url
        self.channels: dict[str, ChannelSlot] = {}
        self.dispatcher: Dispatcher  # built in start(), once the channels are
        # what providers and flows keep for their routes and for shutdown, each typed
        self.closers: list[Callable[[], Awaitable[None]]] = []
        # the directory in force (DirectoryDesk.current): its deps are this daemon's checks, called later
        self.directory_desk = DirectoryDesk(store=self.store, roster_path=config.roster.path,
                                            check=self.check_roster, apply=self.apply_directory)
        self.webhook_secret = ""
        self.sink_counts: Counter[str] = Counter()
        self.sandbox: Sandbox | None = None
        self.twilio_api: TwilioApi | None = None
        self.twilio_config: TwilioConfig | None = None
        self.twilio_auth_token: str | None = None
        self.aliyun_receipts: AliyunReceipts | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.jobs = Scheduler()  # the periodic work (gateway/jobs/registry.py)
        self.feeds: CapFeedPoller | None = None
        self._stopped = asyncio.Event()
        self.started_at = time.time()

    # ---- configuration
    def load_runtime(self, directory: Directory | None = None, *, roster: Roster | None = None,
                     policy: Policy | None = None) -> Runtime:
        """Load roster and policy and check they fit together. The roster is the directory's (from
        the store, see gateway/flows/directory.py), else `roster`, else the configured file's.

        Raises:
            contacts.model.RosterError, gateway.policy.PolicyError, ValueError.
        """
        directory = directory or self.directory_desk.current
        return load_runtime(self.config, base_url=self.base_url, renderer=self.renderer,
                            channels=self.channels.keys(), links=self.links, report_links=self.report_links,
                            roster=directory.roster if directory is not None else roster, policy=policy)

    def check_roster(self, roster: Roster, policy: Policy | None = None) -> list[str]:
        """Why `roster` could not be put in force with the running (or the given) policy and
        the configured extra contacts; empty when it can."""
        try:
            load_runtime(self.config, base_url=self.base_url, renderer=self.renderer,
                         channels=self.channels.keys(), links=self.links, report_links=self.report_links,
                         roster=roster, policy=policy or self.runtime.policy)
        except ValueError as exc:
            return [str(exc)]
        return []

    def apply_directory(self, directory: Directory) -> None:
        """Put a new revision of the directory in force with the running policy (the directory
        desk then records it as the current one).

        Raises:
            ValueError: it does not fit the policy or the extra contacts.
        """
        self.runtime = self.load_runtime(directory, policy=self.runtime.policy)

    def reload(self) -> bool:
        """SIGHUP: swap roster and policy atomically, or keep the old ones (in a task: the
        directory is read from the store, where the configured file is seeded again while the
        office has not imported one)."""
        self._tasks.append(asyncio.create_task(self._reload(), name="reload"))
        return True

    async def _reload(self) -> None:
        try:
            policy = load_policy(self.config.policy.path)
            found = await self.directory_desk.sync(policy=policy)
            rt = self.load_runtime(found, policy=policy)
        except Exception as exc:
            log.error("config_reload_rejected", error=str(exc))
            return
        self.directory_desk.current = found
        self.runtime = rt
        log.info("config_reloaded", roster_version=rt.roster.version[:12], policy_version=rt.policy.version[:12])
        await self._after_reload()

    async def _after_reload(self) -> None:
        await reload_twilio(self)
        for name in self.channels:
            self.dispatcher.resume(name)
        await self.audit("operator", "config_reloaded", "runtime",
                         {"roster_version": self.runtime.roster.version, "policy_version": self.runtime.policy.version})

    # ---- intake
    async def cancel(self, event_id: str, *, by: str) -> int:
        n = await self.store.cancel_event(event_id, at=time.time(), by=by)
        await self.audit(by, "event_cancelled", event_id, {"cancelled": n})
        log.info("event_cancelled", event_id=event_id, cancelled=n, by=by)
        return n

    # ---- lifecycle
    async def start(self) -> None:
        cfg = self.config
        await self.store.open()
        if cfg.auth.tokens_file:
            self.tokens = TokenBook.from_file(cfg.auth.tokens_file)
        else:
            self.tokens, path = TokenBook.admin_default(cfg.data_dir)
            log.warning("admin_token_created", path=str(path.resolve()),
                        signer_token=str(path.with_name("signer.token").resolve()),
                        note="no tokens file configured: this token has every scope; warnings are signed "
                             "(签发) with the signer token (principal commander)")
        app = self.make_app()
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.server.host, cfg.server.port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        if not cfg.server.public_base_url:
            host = "127.0.0.1" if cfg.server.host in ("0.0.0.0", "::", "") else cfg.server.host
            self.base_url = f"http://{host}:{self.port}"
        ack_secret = secret_file(cfg.data_dir, "ack.secret", "GATEWAY_ACK_SECRET")
        self.links = AckLinks(ack_secret, self.base_url)
        self.report_links = ReportLinks(ack_secret, self.base_url)
        # built before the channels, holding this very dict: a provider's receipts may arrive meanwhile
        self.fallback = Fallback(store=self.store, runtime=lambda: self.runtime, channels=self.channels,
                                 renderer=self.renderer, wake=lambda: self.dispatcher.wake())
        self.receipts = ProviderReceipts(store=self.store, rules=receipt_rules(cfg), fallback=self.fallback,
                                         metrics=self.metrics, wake=lambda: self.dispatcher.wake())
        self.persons = PersonNotices(store=self.store, runtime=lambda: self.runtime, renderer=self.renderer,
                                     links=self.links, lists=list_links(ack_secret, self.base_url),
                                     signature=cfg.sms.signature, wake=lambda: self.dispatcher.wake())
        self.escalation = Escalation(store=self.store, runtime=lambda: self.runtime,
                                     voice_text=self.fallback.voice_text, signature=cfg.sms.signature,
                                     metrics=self.metrics, audit=self.audit, wake=lambda: self.dispatcher.wake(),
                                     persons=self.persons)
        self.public = PublicDesk(store=self.store, runtime=lambda: self.runtime, metrics=self.metrics,
                                 audit=self.audit, wake=lambda: self.dispatcher.wake())
        # the reports first: sign-off reports a release or an expiry, the notices ask who signs
        self.upward_reports = UpwardReports(store=self.store, runtime=lambda: self.runtime, audit=self.audit,
                                            wake=lambda: self.dispatcher.wake(), base_url=self.base_url,
                                            signature=cfg.sms.signature)
        self.signoff = SignOff(store=self.store, runtime=lambda: self.runtime, audit=self.audit,
                               metrics=self.metrics, wake=lambda: self.dispatcher.wake(),
                               report_release=self.upward_reports.report_release,
                               report_expired=self.upward_reports.report_expired)
        self.signoff_notices = SignoffNotices(store=self.store, runtime=lambda: self.runtime, audit=self.audit,
                                              wake=lambda: self.dispatcher.wake(), links=self.links,
                                              base_url=self.base_url, signature=cfg.sms.signature,
                                              signers=self.signoff.signers,
                                              status_report=self.upward_reports.status_report)
        self.channels.update(await build_channels(self))
        self.metrics.register_channels(self.channels.keys())
        self.directory_desk.current = await self.directory_desk.sync(policy=load_policy(cfg.policy.path))
        self.runtime = self.load_runtime()
        d = cfg.dispatch
        base_url = self.base_url
        self.dispatcher = Dispatcher(
            self.store, self.channels, self.metrics,
            backoff=Backoff(initial=d.backoff_initial, base=d.backoff_base, maximum=d.backoff_max),
            concurrency=d.concurrency, lease_for=d.lease_seconds,
            meta=lambda item: delivery_meta(base_url, item),
            on_failed=self.receipts.on_delivery_failed,
        )
        self.intake = Intake(store=self.store, runtime=lambda: self.runtime, dispatcher=self.dispatcher,
                             hold=self.signoff.hold_for, report_release=self.upward_reports.report_release,
                             cap=cfg.cap,
                             metrics=self.metrics, audit=self.audit)
        # the machine sources' ways into intake (the HTTP intakes and the CAP feeds)
        self.cap_intake = CapIntake(store=self.store, submit=self.intake.submit,
                                    unknown_lift=self.intake.unknown_lift, cap=cfg.cap)
        self.alertmanager_intake = AlertmanagerIntake(store=self.store, submit=self.intake.submit,
                                                      rules=cfg.alertmanager.rules, level_values=cfg.cap.level_values)
        # after the HTTP site started: the roll-up's links need the base URL it settled on
        self.reports = ReportDesk(store=self.store, runtime=lambda: self.runtime, report_links=self.report_links,
                                  metrics=self.metrics, audit=self.audit)
        self.report_docs = ReportDocs(store=self.store, runtime=lambda: self.runtime, reports=self.reports)
        self.report_schedule = ReportSchedule(
            store=self.store, runtime=lambda: self.runtime, reports=self.reports, report_links=self.report_links,
            submit=self.intake.submit, metrics=self.metrics, wake=lambda: self.dispatcher.wake(),
            base_url=self.base_url, signature=cfg.sms.signature)
        self.reminders = Reminders(store=self.store, runtime=lambda: self.runtime, submit=self.intake.submit,
                                   register_report=self.reports.register,
                                   public_deliveries=self.public.deliveries, wake=lambda: self.dispatcher.wake())
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="dispatcher"))
        if cfg.intake.cap_feeds:
            self.feeds = CapFeedPoller(cfg.intake.cap_feeds, self.store, self._take_feed_entry, self.metrics,
                                       max_entry_bytes=cfg.server.max_body_bytes)
            self.feeds.open()
        register_jobs(self.jobs, self, feeds=self.feeds)
        self.jobs.start()
        self.ready = True
        log.info("gateway_started", url=self.base_url, store=cfg.store_url.split("@")[-1],
                 roster_units=len(self.runtime.roster.units), channels=sorted(self.channels),
                 worker_id=self.dispatcher.worker_id)

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware], client_max_size=self.config.server.max_body_bytes)
        app[GATEWAY] = self
        for table in ROUTE_TABLES:
            app.add_routes(table)
        return app

    async def _take_feed_entry(self, raw: bytes, principal: str) -> tuple[int, dict[str, Any]]:
        """A feed entry's CAP through the same intake as `POST /v1/intake/cap`.

        Raises:
            gateway.cap_feed_poller.Refused: intake refused it (a 4xx at the HTTP intake).
        """
        try:
            return await self.cap_intake.take(raw, source="cap_feed", principal=principal)
        except CapError as exc:
            raise Refused(exc.code, exc.message) from exc
        except DomainError as exc:
            raise Refused(exc.code, exc.message) from exc

    async def update_stats(self) -> None:
        """The queue and channel gauges from the outbox and the dispatcher (a periodic job).

        Raises:
            whatever the store raises (the next round tries again).
        """
        stats = await self.store.outbox_stats(time.time())
        for ch in self.channels:
            self.metrics.queue_depth.labels(ch).set(stats.depth.get(ch, 0))
            self.metrics.oldest_pending.labels(ch).set(stats.oldest_pending.get(ch, 0.0))
            up = self.dispatcher.channel_up(ch) and getattr(self.channels[ch].channel, "is_up", lambda: True)()
            self.metrics.channel_up.labels(ch).set(1 if up else 0)

    async def stop(self) -> None:
        """Stop intake, drain in-flight sends up to the grace period, release, close."""
        log.info("gateway_stopping", inflight=self.dispatcher.inflight if hasattr(self, "dispatcher") else 0)
        self.ready = False
        if self.runner is not None:
            for site in list(self.runner.sites):
                await site.stop()  # no new requests; in-flight handlers finish
        if hasattr(self, "dispatcher"):
            await self.dispatcher.stop(self.config.dispatch.grace_seconds)
        await self.jobs.stop()
        if self.feeds is not None:
            await self.feeds.close()
        for t in self._tasks:
            if t.get_name() != "dispatcher":
                t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for slot in getattr(self, "channels", {}).values():
            await slot.channel.aclose()
        api = self.twilio_api
        if api is not None:
            await api.aclose()
        for closer in self.closers:
            await closer()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.store.close()
        log.info("gateway_stopped")


def secret_file(data_dir: str, name: str, env: str) -> bytes:
    """A secret from the environment, else from <data-dir>/<name> (created once, mode 0600)."""
    from_env = os.environ.get(env, "")
    if from_env:
        logs.register_secret(from_env)
        return from_env.encode()
    path = Path(data_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    value = path.read_text().strip()
    logs.register_secret(value)
    return value.encode()
