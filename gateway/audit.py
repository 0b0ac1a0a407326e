"""The audit trail: append-only, hash-chained; `verify` names the first record that breaks it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.store.base import Store
from gateway.store.common import audit_hash, ts
from gateway.store.ports import Audit


class AuditTrail:
    """Appends to the hash chain (the store computes the hashes in its own transaction)."""

    def __init__(self, store: Audit, clock: Callable[[], float] = time.time):
        self._store = store
        self._clock = clock

    async def __call__(self, principal: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        """Raises whatever the store raises (an append never fails silently)."""
        await self._store.append_audit(at=self._clock(), principal=principal, action=action, subject=subject,
                                       detail=detail)


@dataclass(frozen=True, slots=True)
class ChainReport:
    records: int
    broken_at: int | None  # sequence number of the first bad record
    problem: str | None


async def verify_chain(store: Store, page: int = 1000) -> ChainReport:
    """Walk the whole chain: each record's hash must match its content and the previous hash."""
    prev, after, n = "", 0, 0
    while True:
        rows = await store.list_audit(after=after, limit=page)
        if not rows:
            return ChainReport(n, None, None)
        for r in rows:
            n += 1
            if r["seq"] != after + 1:
                return ChainReport(n, r["seq"], f"record {after + 1} is missing")
            if r["prev_hash"] != prev:
                return ChainReport(n, r["seq"], "prev_hash does not match the previous record")
            want = audit_hash(r["seq"], r["at"], r["principal"], r["action"], r["subject"], r["detail"], prev)
            if want != r["hash"]:
                return ChainReport(n, r["seq"], "content does not match its hash (edited)")
            prev, after = r["hash"], r["seq"]


def record_view(r: dict[str, Any]) -> dict[str, Any]:
    return {"seq": r["seq"], "at": ts(r["at"]), "principal": r["principal"], "action": r["action"],
            "subject": r["subject"], "detail": json.loads(r["detail"]), "prev_hash": r["prev_hash"],
            "hash": r["hash"]}
