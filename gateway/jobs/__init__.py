"""Periodic work: every use case's round (escalation steps, reminders, draft expiry, receipt
timeouts, CAP feed polls, ...) is registered, each on its own, with the one `Scheduler`
(`gateway/jobs/scheduler.py`) by the composition root."""
