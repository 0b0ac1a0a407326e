"""Exact provider rate (issue 9 item 4): SMS through the real daemon and the real twilio SDK
against the sandbox, which answers 429 whenever more than R requests arrive within a second.

    python -m bench.rate [--rate 5] [--seconds 60]

Reports the achieved rate over the run (target: within 2% of R, never above), the most
requests the sandbox saw in any 1-second window, and the 429s it served (target: 0).
Everything stays on 127.0.0.1; the run is bounded by --seconds plus a fixed margin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from gateway.sandbox import Sandbox, SandboxConfig
from tests.support.daemon import Daemon

SID, TOKEN = "AC" + "7" * 32, "bench-rate-token"
UNITS_POLICY = {
    "drill_audience": {"roles": ["hq_office"]},
    "max_attempts": {"sms": 5, "voice": 3, "webhook": 5},
    "rules": [{"name": "everyone-sms", "when": {}, "channels": ["sms"],
               "audience": {"roles": ["hq", "duty_office", "upward", "hq_office", "member_unit", "township"]}}],
}


async def run(rate: float, seconds: float) -> dict[str, Any]:
    """Returns the figures; raises TimeoutError when the SMS are not all accepted in time."""
    sandbox = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.01,
                                    max_per_second=math.floor(rate)))
    await sandbox.start()
    events = max(1, math.ceil(rate * seconds / 40))  # 40 units, one SMS each per event
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp:
        mobiles = [{"number": "13800000000"}]  # one test mobile for every unit
        extra = {"*": mobiles}
        cfg = {"roster": {"extra_contacts": extra},
               "channels": {"webhook": {"enabled": False},
                            "twilio": {"enabled": True, "base_url": sandbox.base_url, "sms_rate": rate,
                                       "voice_rate": rate, "timeout": 5.0}},
               "sandbox": {"enabled": False}, "dispatch": {"concurrency": 64}}
        daemon = Daemon(Path(tmp), cfg, UNITS_POLICY, env={"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN})
        await daemon.start()
        try:
            for i in range(events):
                status, body = await daemon.call("POST", "/v1/events", json_body={
                    "type": "notice", "headline": f"速率测试{i}", "id": f"rate-{i}"})
                if status != 202:
                    raise RuntimeError(f"event refused: {status} {body}")
            want = events * 40
            deadline = asyncio.get_running_loop().time() + seconds * 1.5 + 30
            while sandbox.stats.count("messages") < want:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"only {sandbox.stats.count('messages')} of {want} SMS reached the sandbox")
                await asyncio.sleep(0.2)
        finally:
            await daemon.stop()
            await sandbox.stop()
    stamps = sandbox.stats.timestamps("messages")
    achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return {"configured_rate": rate, "requests": len(stamps), "seconds": round(stamps[-1] - stamps[0], 2),
            "achieved_rate": round(achieved, 4), "achieved_over_configured": round(achieved / rate, 4),
            "max_in_any_second": sandbox.stats.max_in_window("messages"), "served_429": sandbox.stats.served_429}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=5.0, help="configured SMS rate per second")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to keep the sender busy")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args.rate, args.seconds)), indent=2))


if __name__ == "__main__":
    main()
