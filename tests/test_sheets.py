"""The office's sheet: XLSX and CSV of persons and duty schedules, read, checked, written back."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from contacts.dump import with_people
from contacts.loader import load_roster
from contacts.model import Roster
from contacts.sheets import SheetError, export_csv, export_xlsx, read_csv, read_xlsx

SAMPLE = Path(__file__).resolve().parents[1] / "contacts" / "samples" / "zezhou-directory-sample.xlsx"


@pytest.fixture(scope="module")
def roster() -> Roster:
    return load_roster()


def cells(data: bytes, sheet: str) -> list[tuple[object, ...]]:
    return list(load_workbook(io.BytesIO(data), read_only=True)[sheet].iter_rows(values_only=True))


def workbook(persons: list[list[object]], duty: list[list[object]]) -> bytes:
    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.title = "人员"
    for row in [["单位", "编号", "姓名", "角色", "手机", "座机", "备注"], *persons]:
        ws.append(row)
    ws = book.create_sheet("值班表")
    for row in [["单位", "值班人", "日期", "开始", "结束"], *duty]:
        ws.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_the_sample_reads_and_writes_back_cell_for_cell(roster: Roster) -> None:
    data = SAMPLE.read_bytes()
    people = read_xlsx(roster, data)
    assert sorted(people) == ["county_emergency_management_bureau", "county_transport_bureau",
                              "zezhou_ecology_branch"]
    persons, duty = people["zezhou_ecology_branch"]
    assert len(persons) == 4 and len(duty) == 4
    assert all(p.name.startswith("样例") for ps, _ in people.values() for p in ps)  # clearly samples
    again = export_xlsx(with_people(roster, people))
    for sheet in ("人员", "值班表"):
        assert cells(again, sheet) == cells(data, sheet)
    assert read_xlsx(roster, again) == people


def test_csv_carries_both_sheets_and_round_trips(roster: Roster) -> None:
    people = read_xlsx(roster, SAMPLE.read_bytes())
    text = export_csv(with_people(roster, people))
    assert text.decode("utf-8-sig").splitlines()[0].startswith("表,单位,编号,姓名,角色")
    assert read_csv(roster, text) == people
    assert export_csv(with_people(roster, read_csv(roster, text))) == text


def test_typed_numbers_names_of_units_and_english_roles_are_accepted(roster: Roster) -> None:
    data = workbook([["县交通运输局", "p1", "样例甲", "liaison", 13900000041, None, None]],
                    [["county_transport_bureau", "样例甲", "2026-12-05", None, None]])
    people = read_xlsx(roster, data)
    [person] = people["county_transport_bureau"][0]
    assert person.mobile is not None and person.mobile.address == "+8613900000041"
    assert people["county_transport_bureau"][1][0].person_id == "p1"


def test_every_problem_is_listed_with_sheet_row_and_column(roster: Roster) -> None:
    data = workbook(
        [["zezhou_ecology_branch", "p1", "样例甲", "联络员", "1390000004", None, None],
         ["county_no_such_bureau", "p2", "样例乙", "联络员", "13900000042", None, None],
         ["zezhou_ecology_branch", "p3", "样例丙", "值班人员", "13900000043", None, None],
         ["zezhou_ecology_branch", "p3", "样例丁", "值班人员", "13900000044", None, None]],
        [["zezhou_ecology_branch", "p3", None, "2026-12-05 08:00", "2026-12-05 18:00"],
         ["zezhou_ecology_branch", "p3", None, "2026-12-05 17:00", "2026-12-06 08:00"],
         ["zezhou_ecology_branch", "p9", "2026-12-07", None, None]])
    with pytest.raises(SheetError) as err:
        read_xlsx(roster, data)
    found = [str(p) for p in err.value.problems]
    assert any(p.startswith("sheet 人员, row 2, column 手机: malformed phone number") or
               p.startswith("sheet 人员, row 2, column 手机: invalid phone number") for p in found), found
    assert "sheet 人员, row 3, column 单位: unknown unit 'county_no_such_bureau' (use the unit's id or name " \
           "from the roster)" in found
    assert "sheet 人员, row 5, column 编号: 'p3' is already used in row 4" in found
    assert ("sheet 值班表, row 3: 2026-12-05 17:00–2026-12-06 08:00 overlaps row 2 (2026-12-05 08:00–"
            "2026-12-05 18:00) of the same unit") in found
    assert "sheet 值班表, row 4, column 值班人: 'p9' is not a person of unit 'zezhou_ecology_branch'" in found
    assert len(found) == 5


def test_a_missing_sheet_or_column_and_a_broken_file_are_named(roster: Roster) -> None:
    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.title = "人员"
    ws.append(["单位", "姓名", "角色", "电话"])
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(SheetError) as err:
        read_xlsx(roster, out.getvalue())
    found = [str(p) for p in err.value.problems]
    assert "sheet 人员, row 1, column 电话: unknown column" in found
    assert "sheet 人员, row 1: missing column(s): 编号" in found
    assert any(p.startswith("sheet 值班表: no sheet named 值班表") for p in found)
    with pytest.raises(SheetError, match="not a readable XLSX workbook"):
        read_xlsx(roster, b"PK\x03\x04 not really a zip")
    with pytest.raises(SheetError, match="the first column must be 表"):
        read_csv(roster, "单位,编号\n".encode())
