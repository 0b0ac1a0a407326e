"""The daemon's state: config, store, tokens, metrics, the HTTP site, and the flows, channels,
dispatcher and jobs that `gateway/app.py` (the composition root) builds into it; the HTTP handlers
reach the flows through it (`api/common.gw`).

Roster and policy live in one immutable `Runtime` that SIGHUP replaces atomically: a bad file
is rejected and the running one stays.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import logs
from gateway.acklinks import AckLinks
from gateway.api.common import GATEWAY, ready_middleware
from gateway.api.errors import error_middleware
from gateway.api.routes import ROUTE_TABLES
from gateway.audit import AuditTrail
from gateway.auth import TokenBook
from gateway.config import Config
from gateway.dispatcher import ChannelSlot
from gateway.jobs.scheduler import Scheduler
from gateway.metrics import Metrics
from gateway.render import Renderer
from gateway.reportlinks import ReportLinks
from gateway.runtime import Runtime, load_runtime
from gateway.store.base import Store
from gateway.store.factory import make_store

if TYPE_CHECKING:
    from channels.twilio import TwilioApi, TwilioConfig
    from contacts.model import Roster
    from gateway.alertmanager import AlertmanagerIntake
    from gateway.cap_feed_poller import CapFeedPoller
    from gateway.cap_intake import CapIntake
    from gateway.dispatcher import Dispatcher
    from gateway.flows.acks import Acknowledgements
    from gateway.flows.directory import Directory, DirectoryDesk
    from gateway.flows.escalation import Escalation
    from gateway.flows.fallback import Fallback
    from gateway.flows.intake import Intake
    from gateway.flows.people import PersonNotices
    from gateway.flows.public import PublicDesk
    from gateway.flows.receipts import ProviderReceipts
    from gateway.flows.reminders import Reminders
    from gateway.flows.report_docs import ReportDocs
    from gateway.flows.report_schedule import ReportSchedule
    from gateway.flows.reports import ReportDesk
    from gateway.flows.signoff import SignOff
    from gateway.flows.signoff_notices import SignoffNotices
    from gateway.flows.signoff_reports import UpwardReports
    from gateway.policy import Policy
    from gateway.providers.aliyun.receipts import AliyunReceipts
    from gateway.sandbox import Sandbox

log = logs.get("gateway")


class Gateway:
    runtime: Runtime
    # built by gateway/app.py, in this order (each from the ones before it)
    acks: Acknowledgements
    directory_desk: DirectoryDesk
    fallback: Fallback
    receipts: ProviderReceipts
    persons: PersonNotices
    escalation: Escalation
    public: PublicDesk
    upward_reports: UpwardReports
    signoff: SignOff
    signoff_notices: SignoffNotices
    dispatcher: Dispatcher
    intake: Intake
    cap_intake: CapIntake
    alertmanager_intake: AlertmanagerIntake
    reports: ReportDesk
    report_docs: ReportDocs
    report_schedule: ReportSchedule
    reminders: Reminders
    # set by open()
    ack_secret: bytes
    links: AckLinks
    report_links: ReportLinks

    def __init__(self, config: Config):
        self.config = config
        self.metrics = Metrics()
        self.store: Store = make_store(config)
        self.audit = AuditTrail(self.store)
        self.tokens = TokenBook({})
        self.renderer = Renderer(signature=config.sms.signature, max_sms_segments=config.sms.max_segments)
        self.runner: web.AppRunner | None = None
        self.port = config.server.port
        self.base_url = config.base_url
        self.channels: dict[str, ChannelSlot] = {}
        # what providers and flows keep for their routes and for shutdown, each typed
        self.closers: list[Callable[[], Awaitable[None]]] = []
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
        self.ready = False
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

    # ---- intake
    async def cancel(self, event_id: str, *, by: str) -> int:
        n = await self.store.cancel_event(event_id, at=time.time(), by=by)
        await self.audit(by, "event_cancelled", event_id, {"cancelled": n})
        log.info("event_cancelled", event_id=event_id, cancelled=n, by=by)
        return n

    # ---- its own resources (the flows, channels and jobs are built by gateway/app.py)
    async def open(self) -> None:
        """Open the store, load the tokens and start the HTTP site; the base URL is settled here
        (the site's port when none is configured), and the links that carry it are built.

        Raises:
            whatever the store raises on open, gateway.auth.TokensError (a bad tokens file),
            OSError (the port is taken).
        """
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
        self.runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.server.host, cfg.server.port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        if not cfg.server.public_base_url:
            host = "127.0.0.1" if cfg.server.host in ("0.0.0.0", "::", "") else cfg.server.host
            self.base_url = f"http://{host}:{self.port}"
        self.ack_secret = secret_file(cfg.data_dir, "ack.secret", "GATEWAY_ACK_SECRET")
        self.links = AckLinks(self.ack_secret, self.base_url)
        self.report_links = ReportLinks(self.ack_secret, self.base_url)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run `coro` as a task of the daemon: `stop()` waits for the dispatcher's, cancels the others."""
        self._tasks.append(asyncio.create_task(coro, name=name))

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware, ready_middleware],
                              client_max_size=self.config.server.max_body_bytes)
        app[GATEWAY] = self
        for table in ROUTE_TABLES:
            app.add_routes(table)
        return app

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
