"""Run the real gateway daemon as a process for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

TOKENS = {
    "writer": ("tok-writer-0123456789", ["events:write", "events:read", "acks:write"]),
    "reader": ("tok-reader-0123456789", ["events:read"]),
    "admin": ("tok-admin-0123456789", ["admin", "events:write", "events:read"]),
    "media": ("tok-media-0123456789", ["public:request", "events:read"]),
    "leader": ("tok-leader-0123456789", ["public:approve", "public:request", "events:read"]),
    "leader2": ("tok-leader2-0123456789", ["public:approve", "events:read"]),
    "acker": ("tok-acker-0123456789", ["acks:write", "events:read"]),
    "office": ("tok-office-0123456789", ["reports:write", "roster:write", "events:read"]),
    # HQ leaders who sign warnings (签发); principals named in the packaged policy's `signoff`
    "commander": ("tok-commander-0123456789", ["events:sign", "events:read", "events:write", "public:approve"]),
    "deputy_commander": ("tok-deputy-0123456789", ["events:sign", "events:read"]),
}
PACKAGED_POLICY = Path(__file__).parents[2] / "gateway" / "defaults" / "policy.yaml"

# Every unit of the roster, for tests that want the whole county on one channel.
ALL_ROLES_POLICY = {
    "drill_audience": {"roles": ["hq_office"], "groups": ["coordination"]},
    "max_attempts": {"webhook": 8, "sms": 5, "voice": 3},
    "rules": [
        {"name": "everyone", "when": {}, "audience": {"roles": [
            "hq", "duty_office", "upward", "hq_office", "member_unit", "township"]},
         "channels": ["webhook"], "ack": "1h"},
    ],
}


# Spawn to ready is about 2 s of CPU (imports, mostly), but a cold start competes for the CPU
# with everything else a loaded test machine runs: three daemons started together on a 2-CPU box
# running the full suite took 20-30 s each. The deadline only has to catch a daemon that hangs.
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    root: Path
    config: dict[str, Any]
    policy: dict[str, Any] | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    starts: int = 0
    start_seconds: float = 0.0  # spawn to ready, of the last start()
    # The packaged policy holds every warning for sign-off (签发). Tests of other things get it
    # off (the policy's `signoff` section is dropped) unless they ask for it with `signoff=True`.
    signoff: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / f"daemon-{self.starts}.log"

    def write_files(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        tokens = [{"principal": p, "token": t, "scopes": s} for p, (t, s) in TOKENS.items()]
        (self.root / "tokens.yaml").write_text(yaml.safe_dump(tokens))
        cfg = dict(self.config)
        cfg.setdefault("data_dir", str(self.root / "var"))
        cfg.setdefault("log_format", "json")
        cfg.setdefault("server", {})["port"] = self.port
        cfg.setdefault("auth", {})["tokens_file"] = str(self.root / "tokens.yaml")
        policy = self.policy
        if policy is None and not self.signoff and "path" not in cfg.get("policy", {}):
            policy = yaml.safe_load(PACKAGED_POLICY.read_text(encoding="utf-8"))
        if policy is not None:
            if not self.signoff:
                policy = {k: v for k, v in policy.items() if k != "signoff"}
            (self.root / "policy.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True))
            cfg.setdefault("policy", {})["path"] = str(self.root / "policy.yaml")
        path = self.root / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        return path

    async def start(self, timeout: float = START_TIMEOUT) -> None:
        """Spawn the daemon and wait until /readyz answers 200.

        Raises:
            RuntimeError: the process exited first.
            TimeoutError: not ready within `timeout` seconds (the message says how far it got).
        """
        path = self.write_files()
        self.starts += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        for k in ("TWILIO_REGION", "TWILIO_EDGE", "GATEWAY_STORE_URL", "GATEWAY_PORT", "GATEWAY_HOST",
                  "GATEWAY_DATA_DIR", "GATEWAY_TOKENS_FILE"):
            if k not in self.env:
                env.pop(k, None)
        log = self.log_path.open("wb")
        loop = asyncio.get_running_loop()
        spawned = loop.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(path)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
        )
        log.close()
        deadline = spawned + timeout
        last = "no answer yet (still importing: the port is bound once the store is open)"
        async with aiohttp.ClientSession() as s:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.tail()}")
                try:
                    async with s.get(self.url + "/readyz") as r:
                        if r.status == 200:
                            self.start_seconds = loop.time() - spawned
                            return
                        last = f"{r.status} {await r.text()}"
                except aiohttp.ClientError:
                    pass
                if loop.time() > deadline:
                    raise TimeoutError(f"daemon (pid {self.proc.pid}) not ready after {timeout:.0f}s; "
                                       f"last /readyz: {last}; log tail:\n{self.tail()}")
                await asyncio.sleep(0.05)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.root.glob("daemon-*.log"))
        )

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        for _ in range(int(timeout / 0.05)):
            if self.proc.poll() is not None:
                return self.proc.returncode
            await asyncio.sleep(0.05)
        self.proc.kill()
        self.proc.wait(5)
        raise TimeoutError("daemon did not stop on SIGTERM")

    async def call(self, method: str, path: str, *, token: str | None = "writer", json_body: Any = None,
                   data: bytes | str | None = None, headers: dict[str, str] | None = None
                   ) -> tuple[int, Any]:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {TOKENS[token][0] if token in TOKENS else token}"
        async with aiohttp.ClientSession() as s, s.request(
            method, self.url + path, json=json_body, data=data, headers=h
        ) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except json.JSONDecodeError:
                return r.status, text

    async def sign(self, event_id: str, *, token: str = "commander", ref: str | None = None) -> dict[str, Any]:
        """Sign (签发) a warning held for sign-off; returns the answer. Raises AssertionError
        unless the daemon answers 200."""
        status, body = await self.call("POST", f"/v1/events/{event_id}/sign", token=token,
                                       json_body={"ref": ref} if ref else {})
        assert status == 200, (status, body)
        return dict(body)

    async def wait_event(self, event_id: str, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Poll GET /v1/events/{id} until predicate(body) holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        body: Any = None
        while asyncio.get_running_loop().time() < deadline:
            status, body = await self.call("GET", f"/v1/events/{event_id}", token="reader")
            if status == 200 and predicate(body):
                return dict(body)
            await asyncio.sleep(0.1)
        raise TimeoutError(f"event {event_id} never matched; last: {json.dumps(body)[:2000]}\n{self.tail()}")

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/metrics") as r:
            return await r.text()


def all_terminal(body: dict[str, Any]) -> bool:
    return bool(body["deliveries"]) and all(
        d["status"] in ("delivered", "failed", "cancelled", "expired") for d in body["deliveries"]
    )


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
