"""The `gateway` command as a process: roster, check-config, send."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, TOKENS
from tests.support.receiver import Receiver
from tests.test_core_api import webhook_config
from tests.test_roster import _expected_e164, _seed_directory


def gateway(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_roster_json_lists_all_forty_directory_entries_with_seed_numbers() -> None:
    out = gateway("roster", "--json")
    assert out.returncode == 0, out.stderr
    units = json.loads(out.stdout)
    assert len(units) == 40
    got = sorted((c["raw"], c["address"], c["kind"]) for u in units for c in u["contacts"])
    want = sorted((e.number, _expected_e164(e.number)[1], _expected_e164(e.number)[0]) for e in _seed_directory())
    assert got == want


def test_roster_filters_by_role_and_group() -> None:
    out = gateway("roster", "--json", "--role", "township")
    assert out.returncode == 0 and len(json.loads(out.stdout)) == 16
    out = gateway("roster", "--json", "--group", "publicity")
    names = {u["id"] for u in json.loads(out.stdout)}
    assert "county_media_centre" in names and "china_mobile_zezhou" in names


def test_check_config_accepts_default_and_names_problems(tmp_path: Path) -> None:
    ok = gateway("check-config")
    assert ok.returncode == 0, ok.stderr
    assert "40 units" in ok.stdout and "2028156" in ok.stdout  # the shared-number warning
    bad_policy = tmp_path / "policy.yaml"
    bad_policy.write_text(
        yaml.safe_dump(
            {
                "drill_audience": {"roles": ["hq_office"]},
                "rules": [{"name": "r1", "audience": {"roles": ["wizards"]}, "channels": ["pigeon"]}],
            }
        )
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"policy": {"path": str(bad_policy)}}))
    bad = gateway("check-config", "--config", str(cfg))
    assert bad.returncode == 1
    assert "pigeon" in bad.stderr
    bad_policy.write_text(
        yaml.safe_dump(
            {
                "drill_audience": {"roles": ["hq_office"]},
                "rules": [{"name": "r1", "audience": {"roles": ["wizards"]}, "channels": ["sms"]}],
            }
        )
    )
    bad = gateway("check-config", "--config", str(cfg))
    assert bad.returncode == 1 and "unknown role wizards" in bad.stderr
    cfg.write_text("server: {port: -5}\n")
    bad = gateway("check-config", "--config", str(cfg))
    assert bad.returncode == 2 and "server.port" in bad.stderr


async def test_send_posts_to_a_running_daemon(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "send",
            "--url",
            d.url,
            "--token",
            TOKENS["writer"][0],
            "--type",
            "warning.issued",
            "--level",
            "yellow",
            "--id",
            "cli-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["event_id"] == "cli-1"
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "send", "--url", d.url, "--token", TOKENS["reader"][0], "--type", "notice"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "forbidden" in out.stderr


def test_demo_reaches_every_unit_on_the_sandbox(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "gateway", "demo"], capture_output=True, text=True, timeout=180,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "NOTHING LEAVES THIS MACHINE" in out.stdout
    assert "every unit reached" in out.stdout and "下村镇人民政府" in out.stdout


def test_check_config_names_bad_extra_contacts(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"roster": {"extra_contacts": {"county_education_bureau": [{"number": "12345"}]}}}))
    bad = gateway("check-config", "--config", str(cfg))
    assert bad.returncode == 1 and "county_education_bureau" in bad.stderr and "12345" in bad.stderr
    cfg.write_text(yaml.safe_dump({"roster": {"extra_contacts": {"no_such_unit": [{"url": "http://127.0.0.1:9/x"}]}}}))
    bad = gateway("check-config", "--config", str(cfg))
    assert bad.returncode == 1 and "unknown unit id 'no_such_unit'" in bad.stderr
    cfg.write_text(yaml.safe_dump({"roster": {"extra_contacts": {"*": [{"url": "http://127.0.0.1:9/{unit_id}",
                                                                        "format": "rss"}]}}}))
    bad = gateway("check-config", "--config", str(cfg))
    assert bad.returncode == 1 and "unknown webhook format 'rss'" in bad.stderr
