"""Write contacts/samples/zezhou-directory-sample.xlsx: the office's sheet, filled with samples.

Every name and number in it is made up (姓名 样例…, mobiles 139 0000 00NN); it shows the columns
and is what the tests import. Run: .venv/bin/python scripts/make-roster-sample.py
"""

from __future__ import annotations

from pathlib import Path

from contacts.dump import with_people
from contacts.loader import load_roster
from contacts.people import people_from_yaml
from contacts.sheets import export_xlsx

UNITS = {  # unit id -> persons (id, name, role, mobile, landline?, note?)
    "zezhou_ecology_branch": [
        ("eco-duty-1", "样例值班员甲", "duty", "13900000011", "", "县指挥部办公室值班"),
        ("eco-duty-2", "样例值班员乙", "duty", "13900000012", "", ""),
        ("eco-liaison", "样例联络员丙", "liaison", "13900000013", "2022718", ""),
        ("eco-leader", "样例领导丁", "leader", "13900000014", "", "分管大气"),
    ],
    "county_emergency_management_bureau": [
        ("em-duty", "样例值班员戊", "duty", "13900000021", "", ""),
        ("em-liaison", "样例联络员己", "liaison", "13900000022", "", ""),
        ("em-leader", "样例领导庚", "leader", "13900000023", "", ""),
    ],
    "county_transport_bureau": [
        ("tr-liaison", "样例联络员辛", "liaison", "13900000031", "", ""),
        ("tr-leader", "样例领导壬", "leader", "13900000032", "3034338", "办公室座机"),
    ],
}
DUTY = {
    "zezhou_ecology_branch": [
        {"person": "eco-duty-1", "date": "2026-12-01"},
        {"person": "eco-duty-2", "date": "2026-12-02"},
        {"person": "eco-duty-1", "from": "2026-12-03 08:30", "to": "2026-12-03 17:30"},
        {"person": "eco-duty-2", "from": "2026-12-03 17:30", "to": "2026-12-04 08:30"},
    ],
    "county_emergency_management_bureau": [
        {"person": "em-duty", "from": "2026-12-01 18:00", "to": "2026-12-08 08:00"},
    ],
}
NOTES = [
    "样例 SAMPLE：本表中的姓名与号码均为虚构（姓名以“样例”开头，手机号为 139 0000 00NN），仅用于说明格式和测试。",
    "人员：单位（单位编号或名称）、编号（全表唯一）、姓名、角色（联络员 / 分管领导 / 值班人员）、手机、座机（可选）、备注（可选）。",
    "值班表：单位、值班人（编号或姓名）、日期（整天）或 开始 + 结束（北京时间，YYYY-MM-DD HH:MM），同一单位的时段不得重叠。",
    "导入：gateway roster import 本文件.xlsx ；导出：gateway roster export --format xlsx 。",
]


def main() -> None:
    roster = load_roster()
    people = {}
    for unit_id, rows in UNITS.items():
        persons = [{"id": i, "name": n, "role": r, "mobile": m, **({"landline": f} if f else {}),
                    **({"note": note} if note else {})} for i, n, r, m, f, note in rows]
        found, duty, errors = people_from_yaml(unit_id, persons, DUTY.get(unit_id), unit_id)
        assert not errors, errors
        people[unit_id] = (found, duty)
    out = Path(__file__).resolve().parents[1] / "contacts" / "samples" / "zezhou-directory-sample.xlsx"
    out.write_bytes(export_xlsx(with_people(roster, people), notes=NOTES))
    print(out)


if __name__ == "__main__":
    main()
