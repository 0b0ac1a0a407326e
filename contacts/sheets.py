"""The office's own sheet (XLSX, or the same rows as CSV): persons and the duty schedule.

Two sheets: 人员 (persons: 单位, 编号, 姓名, 角色, 手机, 座机, 备注) and 值班表 (the schedule: 单位, 值班人,
日期, 开始, 结束). Headers may also be the English keys (unit, id, name, role, mobile, landline,
note; unit, person, date, from, to); other sheets (a 说明 page) are ignored. A CSV carries both
in one table, with a first column 表 saying which sheet each row belongs to.

The whole file is checked before anything changes and every problem is reported with its sheet,
row and column (`SheetError.problems`); a valid file yields every unit's persons and schedule.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contacts.model import Roster
from contacts.people import BEIJING, ROLE_LABELS, DutyEntry, Person, overlapping, parse_duty, parse_person

__all__ = [
    "DUTY",
    "PERSONS",
    "People",
    "Problem",
    "SheetError",
    "export_csv",
    "export_xlsx",
    "read_csv",
    "read_xlsx",
]

PERSONS, DUTY = "人员", "值班表"
# (key, Chinese header) in sheet order; either spelling is accepted as a header
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    PERSONS: (("unit", "单位"), ("id", "编号"), ("name", "姓名"), ("role", "角色"), ("mobile", "手机"),
              ("landline", "座机"), ("note", "备注")),
    DUTY: (("unit", "单位"), ("person", "值班人"), ("date", "日期"), ("from", "开始"), ("to", "结束")),
}
_SHEET_ALIASES = {PERSONS: PERSONS, "persons": PERSONS, DUTY: DUTY, "duty": DUTY}
_CSV_SHEET = "表"
_REQUIRED = {PERSONS: ("unit", "id", "name", "role"), DUTY: ("unit", "person")}

# unit id -> (persons, schedule)
People = dict[str, tuple[tuple[Person, ...], tuple[DutyEntry, ...]]]


@dataclass(frozen=True, slots=True)
class Problem:
    sheet: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"sheet {self.sheet}" + (f", row {self.row}" if self.row else "")
        return f"{where}{f', column {self.column}' if self.column else ''}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"sheet": self.sheet, "row": self.row, "column": self.column, "message": self.message}


class SheetError(ValueError):
    """The file cannot be taken; `problems` lists every one found (nothing was changed)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(map(str, self.problems)))


Row = tuple[int, dict[str, object]]  # (row number as the office sees it, values by key)


def _header_map(sheet: str, header: Sequence[object], problems: list[Problem]) -> dict[int, str]:
    names = {**{k: k for k, _ in COLUMNS[sheet]}, **{zh: k for k, zh in COLUMNS[sheet]}}
    found: dict[int, str] = {}
    for index, cell in enumerate(header):
        text = str(cell).strip() if cell is not None else ""
        if not text or text == _CSV_SHEET:
            continue
        key = names.get(text) or names.get(text.lower())
        if key is None:
            problems.append(Problem(sheet, 1, text, "unknown column"))
        else:
            found[index] = key
    missing = [zh for k, zh in COLUMNS[sheet] if k in _REQUIRED[sheet] and k not in found.values()]
    if missing:
        problems.append(Problem(sheet, 1, None, f"missing column(s): {', '.join(missing)}"))
    return found


def _rows(sheet: str, table: Iterable[Sequence[object]], problems: list[Problem], start: int = 1) -> list[Row]:
    lines = iter(table)
    header = next(lines, None)
    if header is None:
        problems.append(Problem(sheet, None, None, "the sheet is empty (a header row is needed)"))
        return []
    columns = _header_map(sheet, header, problems)
    out = []
    for number, line in enumerate(lines, start=start + 1):
        values = {key: line[i] if i < len(line) else None for i, key in columns.items()}
        if all(v is None or str(v).strip() == "" for v in values.values()):
            continue  # blank lines between blocks are common in hand-kept sheets
        out.append((number, values))
    return out


def _label(sheet: str, key: str) -> str:
    return dict(COLUMNS[sheet])[key]


def people_from_rows(roster: Roster, persons: Sequence[Row], duty: Sequence[Row],
                     problems: list[Problem] | None = None) -> People:
    """Every unit's persons and schedule from the rows of both sheets.

    Raises:
        SheetError: any problem here or already in `problems` (header problems); all are listed.
    """
    problems = [] if problems is None else problems
    by_unit: dict[str, dict[str, Person]] = {}
    owner: dict[str, int] = {}
    for number, values in persons:
        unit = _unit(roster, PERSONS, number, values, problems)
        person, found = parse_person(unit or "", values)
        problems.extend(Problem(PERSONS, number, _label(PERSONS, k), m) for k, m in found.items())
        if person is None or unit is None:
            continue
        if person.id in owner:
            problems.append(Problem(PERSONS, number, _label(PERSONS, "id"),
                                    f"{person.id!r} is already used in row {owner[person.id]}"))
            continue
        owner[person.id] = number
        by_unit.setdefault(unit, {})[person.id] = person
    schedule: dict[str, list[tuple[int, DutyEntry]]] = {}
    for number, values in duty:
        unit = _unit(roster, DUTY, number, values, problems)
        if unit is None:
            continue
        entry, found = parse_duty(unit, values, by_unit.get(unit, {}))
        problems.extend(Problem(DUTY, number, _label(DUTY, k), m) for k, m in found.items())
        if entry is not None:
            schedule.setdefault(unit, []).append((number, entry))
    for rows in schedule.values():
        entries = [e for _, e in rows]
        for i, j in overlapping(entries):
            problems.append(Problem(DUTY, rows[j][0], None, f"{entries[j].describe()} overlaps row {rows[i][0]} "
                                    f"({entries[i].describe()}) of the same unit"))
    if problems:
        raise SheetError(problems)
    return {uid: (tuple(by_unit.get(uid, {}).values()), tuple(e for _, e in schedule.get(uid, [])))
            for uid in roster.units if uid in by_unit or uid in schedule}


def _unit(roster: Roster, sheet: str, number: int, values: Mapping[str, object], problems: list[Problem]
          ) -> str | None:
    ref = str(values.get("unit") or "").strip()
    unit = roster.find(ref) if ref else None
    if unit is None:
        problems.append(Problem(sheet, number, _label(sheet, "unit"),
                                f"unknown unit {ref!r} (use the unit's id or name from the roster)" if ref
                                else "missing"))
        return None
    return unit.id


# ---- XLSX

def read_xlsx(roster: Roster, data: bytes) -> People:
    """The office's workbook: sheets 人员 and 值班表.

    Raises:
        SheetError: not a readable workbook, a sheet missing, or any row invalid.
    """
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError and XML errors alike for a bad file
        raise SheetError([Problem("-", None, None, f"not a readable XLSX workbook: {type(exc).__name__}")]) from exc
    problems: list[Problem] = []
    tables: dict[str, list[Row]] = {PERSONS: [], DUTY: []}
    try:
        titles = {_SHEET_ALIASES.get(t.strip().lower(), _SHEET_ALIASES.get(t.strip())): t for t in book.sheetnames}
        for sheet in (PERSONS, DUTY):
            if sheet not in titles:
                problems.append(Problem(sheet, None, None, f"no sheet named {sheet} (sheets: {book.sheetnames})"))
                continue
            ws = book[titles[sheet]]
            tables[sheet] = _rows(sheet, ws.iter_rows(values_only=True), problems)
    finally:
        book.close()
    return people_from_rows(roster, tables[PERSONS], tables[DUTY], problems)


def _cells(roster: Roster, sheet: str) -> list[list[object]]:
    rows: list[list[object]] = [[zh for _, zh in COLUMNS[sheet]]]
    for unit in roster.units.values():
        if sheet == PERSONS:
            rows += [[unit.id, p.id, p.name, ROLE_LABELS[p.role], p.mobile.raw if p.mobile else None,
                      p.landline.raw if p.landline else None, p.note or None] for p in unit.persons]
        else:
            rows += [[unit.id, d.person_id, d.day, *((None, None) if d.day else (_naive(d.start), _naive(d.end)))]
                     for d in unit.duty]
    return rows


def _naive(at: datetime) -> datetime:
    # Excel has no time zones: the sheet shows Beijing wall-clock time
    return at.astimezone(BEIJING).replace(tzinfo=None)


def export_xlsx(roster: Roster, *, notes: Sequence[str] = ()) -> bytes:
    """The roster's persons and schedules as the office's workbook (what `read_xlsx` reads back)."""
    from openpyxl import Workbook

    book = Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    widths = {PERSONS: (28, 16, 12, 10, 16, 16, 20), DUTY: (28, 16, 12, 18, 18)}
    for sheet in (PERSONS, DUTY):
        ws = book.create_sheet(sheet)
        for row in _cells(roster, sheet):
            ws.append(row)
        for index, width in enumerate(widths[sheet]):
            ws.column_dimensions[chr(ord("A") + index)].width = width
        for row in ws.iter_rows(min_row=2):
            for cell in row:
                if isinstance(cell.value, datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm"
                elif cell.column_letter == "C" and sheet == DUTY and cell.value is not None:
                    cell.number_format = "yyyy-mm-dd"
                elif cell.column_letter in ("E", "F") and sheet == PERSONS:
                    cell.number_format = "@"  # numbers as text: Excel would drop a leading 0
    if notes:
        ws = book.create_sheet("说明")
        for line in notes:
            ws.append([line])
        ws.column_dimensions["A"].width = 100
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ---- CSV (both sheets in one table, the 表 column telling them apart)

_CSV_KEYS = ("unit", "id", "name", "role", "mobile", "landline", "note", "person", "date", "from", "to")


def read_csv(roster: Roster, data: bytes) -> People:
    """Rows of both sheets in one CSV (UTF-8, with or without a BOM); a header row with 表 first.

    Raises:
        SheetError: not UTF-8, no 表 column, an unknown sheet name, or any row invalid.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SheetError([Problem("CSV", None, None, f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from exc
    lines = list(csv.reader(io.StringIO(text)))
    problems: list[Problem] = []
    if not lines or not lines[0] or lines[0][0].strip() not in (_CSV_SHEET, "sheet"):
        raise SheetError([Problem("CSV", 1, None, f"the first column must be {_CSV_SHEET} (sheet)")])
    header = lines[0]
    tables: dict[str, list[list[object]]] = {PERSONS: [], DUTY: []}
    numbers: dict[str, list[int]] = {PERSONS: [], DUTY: []}
    for number, line in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in line):
            continue
        sheet = _SHEET_ALIASES.get(line[0].strip())
        if sheet is None:
            problems.append(Problem("CSV", number, _CSV_SHEET, f"unknown sheet {line[0]!r} (use {PERSONS} or {DUTY})"))
            continue
        tables[sheet].append(list(line))
        numbers[sheet].append(number)
    rows: dict[str, list[Row]] = {}
    for sheet in (PERSONS, DUTY):
        own = {k for k, _ in COLUMNS[sheet]} | {zh for _, zh in COLUMNS[sheet]}
        keep = [i for i, h in enumerate(header) if h.strip() in own or h.strip().lower() in own]
        sub: list[Sequence[object]] = [[header[i] for i in keep]]
        sub += [[(line[i] if i < len(line) else "") or None for i in keep] for line in tables[sheet]]
        parsed = _rows(sheet, sub, problems)
        # _rows numbers rows 2, 3, ...: map them back to the CSV's own line numbers
        rows[sheet] = [(numbers[sheet][n - 2], values) for n, values in parsed]
    return people_from_rows(roster, rows[PERSONS], rows[DUTY], problems)


def export_csv(roster: Roster) -> bytes:
    """Both sheets as one CSV, in the layout `read_csv` reads (UTF-8 with a BOM, for Excel)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    labels = {k: zh for sheet in (PERSONS, DUTY) for k, zh in COLUMNS[sheet]}
    writer.writerow([_CSV_SHEET, *(labels[k] for k in _CSV_KEYS)])
    for sheet in (PERSONS, DUTY):
        keys = [k for k, _ in COLUMNS[sheet]]
        for cells in _cells(roster, sheet)[1:]:
            values = dict(zip(keys, cells, strict=True))
            writer.writerow([sheet, *(_csv_text(values.get(k)) for k in _CSV_KEYS)])
    return out.getvalue().encode("utf-8-sig")


def _csv_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)
