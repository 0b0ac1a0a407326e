"""The directory kept by the office: the roster (units, persons, duty schedules, actions) lives in
the store, seeded from the configured roster file on first start, changed by imports of the
office's sheet (XLSX or CSV: persons and schedules) or of roster YAML (everything), and exported
in the same shapes.

An import is checked whole before anything changes: every problem is listed with its sheet, row
and column, and the roster is replaced in one transaction together with its audit record (who,
what changed), or not at all. Every instance polls the store's revision, so an import on one is in
force on all of them within a second or two.

While the office has not imported anything, the configured file stays the source: a changed file
(SIGHUP) is seeded again. Once the office has imported, the store wins and the file is ignored.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from contacts.dump import dump_roster, with_people
from contacts.loader import PACKAGED_ROSTER, load_roster_text
from contacts.model import Roster, RosterError
from contacts.sheets import Problem, SheetError, export_csv, export_xlsx, read_csv, read_xlsx
from gateway.flows.errors import Conflict, Invalid
from gateway.logs import get as get_logger
from gateway.store import ports
from gateway.store.records import RosterDoc

if TYPE_CHECKING:
    from gateway.policy import Policy

log = get_logger("gateway.directory")
FORMATS = ("xlsx", "csv", "yaml")
CONTENT_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
    "yaml": "application/yaml; charset=utf-8",
}
SAMPLE_NOTES = (
    "人员：单位、编号、姓名、角色（联络员 / 分管领导 / 值班人员）、手机、座机、备注。",
    "值班表：单位、值班人、日期（整天）或 开始 + 结束（北京时间 YYYY-MM-DD HH:MM），同一单位的时段不得重叠。",
)


class InvalidRoster(Invalid):
    """An import refused; `problems` lists every one (sheet, row, column, message)."""

    def __init__(self, problems: list[Problem]):
        head = "; ".join(str(p) for p in problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5
                                                          else "")
        super().__init__("invalid_roster", f"{len(problems)} problem(s), nothing was changed: {head}")
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Directory:
    """The roster in force and the store revision it came from."""

    revision: int
    roster: Roster
    source: str


class RosterCheck(Protocol):
    """Why a roster could not be put in force with the running (or the given) policy and the
    configured extra contacts; empty when it can (`Gateway.check_roster`)."""

    def __call__(self, roster: Roster, policy: Policy | None = None) -> list[str]: ...


PutInForce = Callable[[Directory], None]
"""Makes a directory's roster the running one with the running policy (`Gateway.apply_directory`).
Raises ValueError when it does not fit the policy or the extra contacts."""


def _file(path: str | None) -> tuple[str, str]:
    """(text, source) of the configured roster file, or the packaged one.

    Raises:
        RosterError: the file cannot be read.
    """
    if path is None:
        text = resources.files("contacts").joinpath("rosters", "zezhou.yaml").read_text(encoding="utf-8")
        return text, PACKAGED_ROSTER
    try:
        return Path(path).read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError([f"{path}: cannot read roster: {exc}"]) from exc


def _load(doc: RosterDoc, source: str) -> Roster:
    return load_roster_text(doc.text, source)


def parse(current: Roster, data: bytes, fmt: str) -> Roster:
    """The roster an upload would make: the sheet's persons and schedules on the current units
    (xlsx, csv), or a whole roster (yaml).

    Raises:
        InvalidRoster: the upload is invalid; every problem is listed.
    """
    try:
        if fmt == "xlsx":
            return with_people(current, read_xlsx(current, data))
        if fmt == "csv":
            return with_people(current, read_csv(current, data))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRoster([Problem("YAML", None, None, f"not UTF-8 text: {exc.reason}")]) from exc
        return load_roster_text(text, "upload")
    except SheetError as exc:
        raise InvalidRoster(exc.problems) from exc
    except RosterError as exc:
        raise InvalidRoster([Problem("YAML", None, None, m.removeprefix("upload: ")) for m in exc.messages]) from exc


def changes(before: Roster, after: Roster) -> dict[str, Any]:
    """What an import changed, for the audit record and the answer."""
    def persons(r: Roster) -> dict[str, Any]:
        return {p.id: p for u in r.units.values() for p in u.persons}

    old, new = persons(before), persons(after)
    duty = {uid: (before.units[uid].duty if uid in before.units else (), u.duty) for uid, u in after.units.items()}
    return {
        "units_added": sorted(set(after.units) - set(before.units)),
        "units_removed": sorted(set(before.units) - set(after.units)),
        "units_changed": sorted(uid for uid, u in after.units.items()
                                if uid in before.units and before.units[uid] != u),
        "persons_added": sorted(set(new) - set(old)),
        "persons_removed": sorted(set(old) - set(new)),
        "persons_changed": sorted(pid for pid in set(old) & set(new) if old[pid] != new[pid]),
        "schedules_changed": sorted(uid for uid, (a, b) in duty.items() if a != b),
        "duty_entries": sum(len(u.duty) for u in after.units.values()),
    }


def _same(a: Roster, b: Roster) -> bool:
    return (dict(a.units) == dict(b.units) and dict(a.groups) == dict(b.groups)
            and dict(a.role_names) == dict(b.role_names))


class DirectoryStore(ports.Directory, Protocol):
    """The store port the directory uses: the roster's revisions."""


class DirectoryDesk:
    """The directory in force on this instance: seeded from the configured file, imported,
    exported, and polled for another instance's import. It holds the `Directory` in force
    (`current`); the daemon reads it from here."""

    def __init__(self, *, store: DirectoryStore, roster_path: str | None, check: RosterCheck,
                 apply: PutInForce) -> None:
        self._store = store
        self._roster_path = roster_path
        self._check = check
        self._apply = apply
        # None until the daemon puts the first synced directory in force (at start)
        self.current: Directory | None = None

    async def sync(self, *, policy: Policy) -> Directory:
        """At start and on SIGHUP: seed the store from the configured file when it holds no roster, or
        only a seed of another text; return the directory in force (the caller puts it in force and
        sets `current`, once the runtime it makes is loaded).

        Raises:
            RosterError: the file or the stored roster is invalid.
            ValueError: the file does not fit `policy` or the extra contacts (nothing is seeded).
        """
        text, source = _file(self._roster_path)
        version = hashlib.sha256(text.encode("utf-8")).hexdigest()
        for _ in range(3):  # another instance may seed at the same moment
            doc = await self._store.current_roster()
            if doc is not None and (not doc.source.startswith("seed:") or doc.version == version):
                if doc.version != version:
                    log.warning("roster_file_ignored", file=source, revision=doc.revision,
                                note="the office maintains the directory in the store; import to change it")
                shown = doc.source.removeprefix("seed:") if doc.source.startswith("seed:") else \
                    f"store revision {doc.revision}"
                return Directory(doc.revision, _load(doc, shown), doc.source)
            problems = self._check(load_roster_text(text, source), policy)  # a bad file is never seeded
            if problems:
                raise ValueError("; ".join(problems))
            new = RosterDoc(revision=(doc.revision if doc else 0) + 1, version=version, text=text,
                            source=f"seed:{source}", by="seed", at=time.time())
            # a seed is the configuration's, not an office's change: the start or reload that takes
            # it is recorded (config_reloaded carries the roster version), the seed itself only logged
            if await self._store.put_roster(new):
                log.info("roster_seeded", revision=new.revision, file=source)
        raise RosterError(["the roster in the store keeps changing while seeding it; try again"])

    def _put(self, directory: Directory) -> None:
        """Put `directory` in force, then record it as the current one.

        Raises:
            ValueError: it does not fit the running policy or the extra contacts.
        """
        self._apply(directory)
        self.current = directory

    async def refresh(self) -> bool:
        """Take a newer revision from the store into the runtime (another instance imported one);
        True when the runtime changed. A stored roster that no longer fits the policy is logged and
        the running one stays.

        Raises:
            whatever the store raises (the roster-revision job tries again next second).
        """
        current = self.current
        if current is None or await self._store.roster_revision() == current.revision:
            return False
        doc = await self._store.current_roster()
        if doc is None:
            return False
        try:
            self._put(Directory(doc.revision, _load(doc, f"store revision {doc.revision}"), doc.source))
        except (RosterError, ValueError) as exc:
            log.error("roster_revision_rejected", revision=doc.revision, error=str(exc))
            self.current = Directory(doc.revision, current.roster, current.source)  # don't retry each poll
            return False
        log.info("roster_revision_taken", revision=doc.revision, version=doc.version[:12])
        return True

    async def _fresh(self) -> Directory:
        """The current directory, after taking any newer revision from the store."""
        await self.refresh()
        current = self.current
        assert current is not None  # synced at start, before the routes serve
        return current

    async def replace(self, data: bytes, fmt: str, *, principal: str) -> dict[str, Any]:
        """Import an upload: check it whole, then replace the roster atomically (with its audit
        record) or change nothing. Unchanged content makes no new revision.

        Raises:
            Invalid: an unknown format.
            InvalidRoster: the upload is invalid, or the roster it makes does not fit the policy or
                the configured extra contacts (every problem listed).
            Conflict: another import changed the roster meanwhile (try again).
        """
        if fmt not in FORMATS:
            raise Invalid("unknown_format", f"format must be one of {', '.join(FORMATS)}", field="format")
        current = await self._fresh()
        roster = parse(current.roster, data, fmt)
        problems = self._check(roster)
        if problems:
            raise InvalidRoster([Problem("roster", None, None, p) for p in problems])
        if _same(current.roster, roster):
            return {"revision": current.revision, "version": current.roster.version, "changed": False,
                    "changes": changes(current.roster, roster)}
        text = dump_roster(roster)
        doc = RosterDoc(revision=current.revision + 1, version=hashlib.sha256(text.encode()).hexdigest(), text=text,
                        source=f"import:{fmt}", by=principal, at=time.time())
        diff = changes(current.roster, roster)
        audit = {"principal": principal, "action": "roster_changed", "subject": "roster",
                 "detail": {"revision": doc.revision, "version": doc.version, "format": fmt, **diff}}
        if not await self._store.put_roster(doc, audit=audit):
            raise Conflict("roster_changed", "the roster was changed by someone else meanwhile; reload and try again")
        self._put(Directory(doc.revision, _load(doc, f"store revision {doc.revision}"), doc.source))
        log.info("roster_changed", revision=doc.revision, principal=principal, format=fmt,
                 persons=len(list(p for u in roster.units.values() for p in u.persons)))
        return {"revision": doc.revision, "version": doc.version, "changed": True, "changes": diff}

    async def export(self, fmt: str) -> tuple[bytes, str]:
        """(body, content type) of the roster in force (without the config's extra contacts).

        Raises:
            Invalid: an unknown format.
        """
        if fmt not in FORMATS:
            raise Invalid("unknown_format", f"format must be one of {', '.join(FORMATS)}", field="format")
        current = await self._fresh()
        if fmt == "xlsx":
            return export_xlsx(current.roster, notes=SAMPLE_NOTES), CONTENT_TYPES[fmt]
        if fmt == "csv":
            return export_csv(current.roster), CONTENT_TYPES[fmt]
        doc = await self._store.current_roster()
        text = doc.text if doc is not None else dump_roster(current.roster)
        return text.encode("utf-8"), CONTENT_TYPES[fmt]
