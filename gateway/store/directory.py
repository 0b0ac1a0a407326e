"""The `Directory` port's statements, for SQLite (`?`) and PostgreSQL (`$n`): every revision of
the roster is a row; a new one is inserted at `expected + 1`, so two writers racing from the same
revision cannot both win (the primary key refuses the second)."""

from __future__ import annotations

from typing import Any

from gateway.store.records import RosterDoc

_COLUMNS = "revision, version, text, source, by_principal, at"
_CURRENT = f"SELECT {_COLUMNS} FROM roster_revisions ORDER BY revision DESC LIMIT 1"
_REVISION = "SELECT COALESCE(MAX(revision), 0) FROM roster_revisions"
_PUT = (f"INSERT INTO roster_revisions ({_COLUMNS}) VALUES ({{0}}, {{1}}, {{2}}, {{3}}, {{4}}, {{5}})"
        " ON CONFLICT (revision) DO NOTHING")

SQLITE = {"current": _CURRENT, "revision": _REVISION, "put": _PUT.format(*["?"] * 6)}
PG = {"current": _CURRENT, "revision": _REVISION, "put": _PUT.format(*[f"${i}" for i in range(1, 7)])}


def doc_of(row: Any) -> RosterDoc | None:
    if row is None:
        return None
    return RosterDoc(revision=int(row[0]), version=str(row[1]), text=str(row[2]), source=str(row[3]),
                     by=str(row[4]), at=float(row[5]))


def put_args(doc: RosterDoc) -> tuple[Any, ...]:
    return doc.revision, doc.version, doc.text, doc.source, doc.by, doc.at
