"""The process: build the daemon from its config, start it, reload it on SIGHUP, stop it on
SIGTERM / SIGINT. Only the CLI's `gateway run` calls it; nothing else imports this module
(an import-linter contract). The daemon itself (`gateway/daemon.py`) builds the flows, the
channels, the dispatcher and the jobs from their typed dependencies.
"""

from __future__ import annotations

import asyncio
import signal

from gateway.config import Config
from gateway.daemon import Gateway


async def serve(config: Config) -> None:
    """Run the daemon until SIGTERM or SIGINT; SIGHUP swaps roster and policy (or keeps them).

    Raises:
        whatever start-up raises (a bad roster, policy or credentials): the process then exits.
    """
    gw = Gateway(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gw.reload)
    await gw.start()
    await stop.wait()
    await gw.stop()
