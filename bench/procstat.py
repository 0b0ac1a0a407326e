"""CPU time and memory of a process from /proc (Linux only; no psutil needed)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` in seconds (children not included).

    Raises:
        OSError: the process is gone or /proc is unavailable.
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        raw = f.read()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = raw[raw.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


@dataclass(frozen=True, slots=True)
class Memory:
    rss_mb: float
    peak_rss_mb: float  # VmHWM: the high-water mark since the process started


def memory(pid: int) -> Memory:
    """Current and peak resident set size of `pid`, in MiB.

    Raises:
        OSError: the process is gone or /proc is unavailable.
    """
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    return Memory(rss_mb=values.get("VmRSS", 0.0), peak_rss_mb=values.get("VmHWM", 0.0))


def reset_peak(pid: int) -> bool:
    """Reset `pid`'s VmHWM to its current RSS (Linux: 5 > /proc/<pid>/clear_refs), so a later
    VmHWM is the peak since now, not since start-up; False where the kernel does not allow it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def fsync_ms(directory: str, n: int = 40) -> dict[str, float]:
    """p50 and p90 of `n` fsyncs of a 4 KiB append in `directory`, ms: what a durable commit
    waits for on this disk right now (it moves with other work on the machine).

    Raises:
        OSError: the directory is not writable.
    """
    path = os.path.join(directory, "fsync-probe")
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            os.write(fd, b"\0" * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return {"p50": times[n // 2], "p90": times[n * 9 // 10]}


def machine() -> dict[str, object]:
    """nproc, CPU model and memory of this machine."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count() or 0, "cpu_model": model, "mem_gb": mem_gb,
            "affinity": len(os.sched_getaffinity(0))}
