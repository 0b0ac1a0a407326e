"""The composition root: builds the daemon from its config (every flow from its typed
dependencies, the channels, the dispatcher, the jobs), starts it, reloads it on SIGHUP and
stops it on SIGTERM / SIGINT. It is the only module that imports everything; nothing imports it
but the CLI's `gateway run` and `gateway demo` (an import-linter contract). The daemon itself
(`gateway/daemon.py`) holds what is built, its HTTP site and its store, and stops them.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import logs
from gateway.alertmanager import AlertmanagerIntake
from gateway.cap import CapError
from gateway.cap_feed_poller import CapFeedPoller, Refused
from gateway.cap_intake import CapIntake
from gateway.config import Config
from gateway.daemon import Gateway
from gateway.dispatcher import Dispatcher
from gateway.flows.acks import Acknowledgements
from gateway.flows.deps import RuntimeRef, Wake
from gateway.flows.directory import DirectoryDesk
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
from gateway.planner import sharing_units
from gateway.policy import load_policy
from gateway.providers.registry import delivery_meta
from gateway.providers.twilio.wiring import reload_twilio
from gateway.retry import Backoff
from gateway.runtime import Runtime
from gateway.wiring import build_channels

log = logs.get("gateway")


async def start(config: Config) -> Gateway:
    """Build the daemon and start it: store, tokens and HTTP site first (the links carry the
    base URL the site settled on), then the flows, the channels, the directory and runtime in
    force, the dispatcher, intake and the flows built on it, the CAP feeds and the jobs.

    Raises:
        whatever start-up raises (a bad roster, policy, tokens file or credentials, a port in use).
    """
    gw = Gateway(config)
    cfg = gw.config
    await gw.open()

    def wake() -> None:
        gw.dispatcher.wake()

    def runtime() -> Runtime:
        return gw.runtime

    gw.acks = Acknowledgements(store=gw.store, metrics=gw.metrics, audit=gw.audit,
                               sharing=lambda unit_id, address: sharing_units(gw.runtime.roster, unit_id, address))
    # the directory in force (DirectoryDesk.current); its checks are the daemon's, called later
    gw.directory_desk = DirectoryDesk(store=gw.store, roster_path=cfg.roster.path,
                                      check=gw.check_roster, apply=gw.apply_directory)
    # built before the channels, holding this very dict: a provider's receipts may arrive meanwhile
    gw.fallback = Fallback(store=gw.store, runtime=runtime, channels=gw.channels, renderer=gw.renderer, wake=wake)
    gw.receipts = ProviderReceipts(store=gw.store, rules=receipt_rules(cfg), fallback=gw.fallback,
                                   metrics=gw.metrics, wake=wake)
    gw.persons = PersonNotices(store=gw.store, runtime=runtime, renderer=gw.renderer, links=gw.links,
                               lists=list_links(gw.ack_secret, gw.base_url), signature=cfg.sms.signature, wake=wake)
    gw.escalation = Escalation(store=gw.store, runtime=runtime, voice_text=gw.fallback.voice_text,
                               signature=cfg.sms.signature, metrics=gw.metrics, audit=gw.audit, wake=wake,
                               persons=gw.persons)
    gw.public = PublicDesk(store=gw.store, runtime=runtime, metrics=gw.metrics, audit=gw.audit, wake=wake)
    # the reports first: sign-off reports a release or an expiry, the notices ask who signs
    gw.upward_reports = UpwardReports(store=gw.store, runtime=runtime, audit=gw.audit, wake=wake,
                                      base_url=gw.base_url, signature=cfg.sms.signature)
    gw.signoff = SignOff(store=gw.store, runtime=runtime, audit=gw.audit, metrics=gw.metrics, wake=wake,
                         report_release=gw.upward_reports.report_release,
                         report_expired=gw.upward_reports.report_expired)
    gw.signoff_notices = SignoffNotices(store=gw.store, runtime=runtime, audit=gw.audit, wake=wake, links=gw.links,
                                        base_url=gw.base_url, signature=cfg.sms.signature,
                                        signers=gw.signoff.signers, status_report=gw.upward_reports.status_report)
    gw.channels.update(await build_channels(gw))
    gw.metrics.register_channels(gw.channels.keys())
    gw.directory_desk.current = await gw.directory_desk.sync(policy=load_policy(cfg.policy.path))
    gw.runtime = gw.load_runtime()
    d = cfg.dispatch
    base_url = gw.base_url
    gw.dispatcher = Dispatcher(
        gw.store, gw.channels, gw.metrics,
        backoff=Backoff(initial=d.backoff_initial, base=d.backoff_base, maximum=d.backoff_max),
        concurrency=d.concurrency, lease_for=d.lease_seconds,
        meta=lambda item: delivery_meta(base_url, item),
        on_failed=gw.receipts.on_delivery_failed,
    )
    _build_intake(gw, runtime, wake)
    gw.spawn(gw.dispatcher.run(), name="dispatcher")
    if cfg.intake.cap_feeds:
        gw.feeds = CapFeedPoller(cfg.intake.cap_feeds, gw.store, _feed_entry(gw.cap_intake), gw.metrics,
                                 max_entry_bytes=cfg.server.max_body_bytes)
        gw.feeds.open()
    register_jobs(gw.jobs, gw, feeds=gw.feeds)
    gw.jobs.start()
    gw.ready = True
    log.info("gateway_started", url=gw.base_url, store=cfg.store_url.split("@")[-1],
             roster_units=len(gw.runtime.roster.units), channels=sorted(gw.channels),
             worker_id=gw.dispatcher.worker_id)
    return gw


def _build_intake(gw: Gateway, runtime: RuntimeRef, wake: Wake) -> None:
    """Intake (it hands off to the dispatcher), the machine sources' ways into it, and the flows
    that submit events of their own (the report schedule, the reminders)."""
    cfg = gw.config
    gw.intake = Intake(store=gw.store, runtime=runtime, dispatcher=gw.dispatcher, hold=gw.signoff.hold_for,
                       report_release=gw.upward_reports.report_release, cap=cfg.cap,
                       metrics=gw.metrics, audit=gw.audit)
    gw.cap_intake = CapIntake(store=gw.store, submit=gw.intake.submit, unknown_lift=gw.intake.unknown_lift,
                              cap=cfg.cap)
    gw.alertmanager_intake = AlertmanagerIntake(store=gw.store, submit=gw.intake.submit,
                                                rules=cfg.alertmanager.rules, level_values=cfg.cap.level_values)
    # after the HTTP site started: the roll-up's links need the base URL it settled on
    gw.reports = ReportDesk(store=gw.store, runtime=runtime, report_links=gw.report_links,
                            metrics=gw.metrics, audit=gw.audit)
    gw.report_docs = ReportDocs(store=gw.store, runtime=runtime, reports=gw.reports)
    gw.report_schedule = ReportSchedule(
        store=gw.store, runtime=runtime, reports=gw.reports, report_links=gw.report_links,
        submit=gw.intake.submit, metrics=gw.metrics, wake=wake, base_url=gw.base_url,
        signature=cfg.sms.signature)
    gw.reminders = Reminders(store=gw.store, runtime=runtime, submit=gw.intake.submit,
                             register_report=gw.reports.register, public_deliveries=gw.public.deliveries,
                             wake=wake)


def _feed_entry(cap_intake: CapIntake) -> Callable[[bytes, str], Awaitable[tuple[int, dict[str, Any]]]]:
    """A CAP feed entry through the same intake as `POST /v1/intake/cap`; a refusal (a 4xx at the
    HTTP intake) is raised as gateway.cap_feed_poller.Refused, which the poller records."""
    async def take(raw: bytes, principal: str) -> tuple[int, dict[str, Any]]:
        try:
            return await cap_intake.take(raw, source="cap_feed", principal=principal)
        except (CapError, DomainError) as exc:
            raise Refused(exc.code, exc.message) from exc

    return take


def reload(gw: Gateway) -> None:
    """SIGHUP: swap roster and policy atomically, or keep the old ones (in a task: the directory
    is read from the store, where the configured file is seeded again while the office has not
    imported one)."""
    gw.spawn(_reload(gw), name="reload")


async def _reload(gw: Gateway) -> None:
    try:
        policy = load_policy(gw.config.policy.path)
        found = await gw.directory_desk.sync(policy=policy)
        rt = gw.load_runtime(found, policy=policy)
    except Exception as exc:  # a bad file of any kind keeps the running runtime
        log.error("config_reload_rejected", error=str(exc))
        return
    gw.directory_desk.current = found
    gw.runtime = rt
    log.info("config_reloaded", roster_version=rt.roster.version[:12], policy_version=rt.policy.version[:12])
    await reload_twilio(gw)
    for name in gw.channels:
        gw.dispatcher.resume(name)
    await gw.audit("operator", "config_reloaded", "runtime",
                   {"roster_version": rt.roster.version, "policy_version": rt.policy.version})


async def serve(config: Config) -> None:
    """Run the daemon until SIGTERM or SIGINT; SIGHUP swaps roster and policy (or keeps them).

    Raises:
        whatever start-up raises (a bad roster, policy or credentials): the process then exits.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # a SIGHUP while starting would otherwise end the process (its default action)
    loop.add_signal_handler(signal.SIGHUP, lambda: log.warning("config_reload_ignored", reason="starting"))
    gw = await start(config)
    loop.add_signal_handler(signal.SIGHUP, reload, gw)
    await stop.wait()
    await gw.stop()
