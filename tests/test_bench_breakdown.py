"""The bench's cost breakdown (bench/breakdown.py): py-spy stacks -> stages and phases -> CPU.

Synthetic speedscope profiles built from the real source files, so the COMMIT line is looked up
where the store really has it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.breakdown import AFTER, FSYNC, LOOP_C, REQUEST, attribute, breakdown_table, parse_frame, stage_of

ROOT = Path(__file__).resolve().parent.parent
SQLITE = str(ROOT / "gateway" / "store" / "sqlite.py")


def _line_of(path: str, text: str) -> int:
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if text in line:
            return n
    raise AssertionError(f"{text!r} not in {path}")


# (name, file, line) of the frames the synthetic stacks use
LOOP = ("Runner.run", "/usr/lib/python3.11/asyncio/runners.py", 118)
HANDLER = ("post_event", str(ROOT / "gateway/api/events.py"), 40)
POLL = ("list_events", str(ROOT / "gateway/api/events.py"), 50)
PLANNER = ("Planner.plan", str(ROOT / "gateway/planner.py"), 10)
RENDER = ("render_text", str(ROOT / "gateway/render.py"), 10)
SEND = ("WebhookChannel.send", str(ROOT / "channels/webhook.py"), 200)
SIGN = ("sign", str(ROOT / "channels/signing.py"), 30)
PROM = ("Counter.inc", "/venv/lib/python3.11/site-packages/prometheus_client/metrics.py", 300)
WORKER = ("_worker", "/usr/lib/python3.11/concurrent/futures/thread.py", 81)
TX = ("SqliteStore._tx", SQLITE, 0)
RECORD = ("SqliteStore.record_event.<locals>.tx", SQLITE, 160)
CLAIM = ("claim", str(ROOT / "gateway/store/sqlite_tx.py"), 50)


def _commit() -> tuple[str, str, int]:
    return (TX[0], SQLITE, _line_of(SQLITE, 'conn.execute("COMMIT")'))


def _profile(threads: dict[str, list[list[tuple[str, str, int]]]]) -> dict[str, Any]:
    frames: list[tuple[str, str, int]] = []

    def idx(f: tuple[str, str, int]) -> int:
        if f not in frames:
            frames.append(f)
        return frames.index(f)

    profiles = [{"name": f'Thread {tid} "x"', "samples": [[idx(f) for f in stack] for stack in stacks]}
                for tid, stacks in threads.items()]
    return {"shared": {"frames": [{"name": n, "file": p, "line": ln} for n, p, ln in frames]},
            "profiles": profiles}


def test_stage_of_takes_the_innermost_specific_frame() -> None:
    frames = [parse_frame(f"{n} ({p}:{ln})") for n, p, ln in (LOOP, SEND, SIGN)]
    assert stage_of(frames) == "sign"
    frames = [parse_frame(f"{n} ({p}:{ln})") for n, p, ln in (LOOP, HANDLER, PLANNER, PROM)]
    assert stage_of(frames) == "metrics/logs"
    assert stage_of([parse_frame(f"{n} ({p}:{ln})") for n, p, ln in (LOOP, SEND)]) == "HTTP send"


def test_attribute_splits_phases_commits_and_drops_polling_and_queueing() -> None:
    main = [
        [LOOP, HANDLER, PLANNER],          # request: plan
        [LOOP, HANDLER, RENDER],           # request: render
        [LOOP, SEND, SIGN],                # after: sign
        [LOOP, SEND],                      # after: HTTP send
        [LOOP, POLL],                      # the bench's own request: dropped
        [LOOP],                            # wake-up points: half the main thread's time was queued,
        [LOOP],                            # i.e. 4 samples' worth, more than there are here
        [LOOP],
    ]
    store = [
        [WORKER, TX, RECORD],              # request: store write
        [WORKER, _commit()],               # ... and its commit
        [WORKER, TX, CLAIM],               # after: a dispatcher claim
        [WORKER, _commit()],               # ... and its commit
    ]
    # main: 8 samples (one a second), 1.4 s on a CPU and as long queued for one; the store
    # thread as many samples per second on a CPU: never blocked on the disk
    times = {"1": (1.4, 1.4), "2": (1.4, 0.0)}
    by = attribute(_profile({"1": main, "2": store}), times, rate=8 / 2.8)
    # main: the 3 wake-up samples dropped, 4 + 1 polling left: 0.28 s each, polling's left out
    assert by[(REQUEST, "plan")] == pytest.approx(0.28)
    assert by[(REQUEST, "render")] == pytest.approx(0.28)
    assert by[(AFTER, "sign")] == pytest.approx(0.28)
    assert by[(AFTER, "HTTP send")] == pytest.approx(0.28)
    assert (AFTER, LOOP_C) not in by
    assert by[(REQUEST, "store write")] == pytest.approx(0.35)
    assert by[(REQUEST, "commit")] == pytest.approx(0.35)
    assert by[(AFTER, "claim")] == pytest.approx(0.35)
    assert by[(AFTER, "commit")] == pytest.approx(0.35)
    assert sum(by.values()) == pytest.approx(1.4 * 4 / 5 + 1.4)


def test_commit_samples_beyond_the_cpu_and_queued_time_are_fsync_and_dropped() -> None:
    main = [[LOOP, SEND]] * 4  # 2 s on a CPU: 2 samples a second
    store = [[WORKER, TX, RECORD], [WORKER, TX, RECORD], [WORKER, _commit()], [WORKER, _commit()],
             [WORKER, _commit()]]  # 1.5 s on a CPU: 3 samples' worth, 2 more were in fsync
    by = attribute(_profile({"1": main, "2": store}), {"1": (2.0, 0.0), "2": (1.5, 0.0)}, rate=2.0)
    assert by[(REQUEST, "store write")] == pytest.approx(1.0)
    assert by[(REQUEST, "commit")] == pytest.approx(0.5)
    assert by[(AFTER, "HTTP send")] == pytest.approx(2.0)
    assert by[(FSYNC, REQUEST)] == pytest.approx(1.0)  # 2 samples at 2 a second


def test_wake_up_samples_beyond_the_queued_time_count_as_event_loop_work() -> None:
    by = attribute(_profile({"1": [[LOOP], [LOOP], [LOOP, SEND], [LOOP, SEND]]}), {"1": (1.0, 0.0)}, rate=4.0)
    assert by[(AFTER, LOOP_C)] == pytest.approx(0.5)
    assert by[(AFTER, "HTTP send")] == pytest.approx(0.5)


def test_breakdown_table_lists_stages_per_event_and_per_delivery() -> None:
    res = {"breakdown": {
        "events": 2, "deliveries_per_event": 40, "rate": 1000, "daemon_cpu_s": 0.01, "attributed_cpu_s": 0.01,
        "us_per_event": {f"{REQUEST}:plan": 400.0, f"{AFTER}:HTTP send": 4000.0},
        "profiled_runs": {"intake_ms": [3.0, 4.0], "first_ms": [1.0, 2.0], "wall_ms": [9.0, 10.0]}}}
    text = breakdown_table({"latency": res})
    assert "| plan | 400 | – | 10.0 |" in text
    assert "| HTTP send | – | 4,000 | 100.0 |" in text
    assert "| **total** (daemon CPU) | 400 | 4,000 | 110.0 |" in text
