"""Contact persons and duty schedules on units: the roster model, its YAML, who is on duty when."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from contacts.dump import dump_roster
from contacts.loader import load_roster, load_roster_text
from contacts.model import RosterError
from contacts.people import BEIJING, duty_person, persons_for

PEOPLE = """\
roles:
  member_unit: 成员单位
units:
  - id: bureau_a
    name: 县甲局
    roles: [member_unit]
    contacts:
      - {number: "2022718", label: 值班电话}
    persons:
      - {id: a-liaison, name: 样例联络员甲, role: 联络员, mobile: "13900000001"}
      - {id: a-leader, name: 样例领导甲, role: leader, mobile: "13900000002", landline: "2022719", note: 样例}
      - {id: a-duty1, name: 样例值班员一, role: duty, mobile: "13900000003"}
      - {id: a-duty2, name: 样例值班员二, role: 值班人员, mobile: "13900000004"}
    duty:
      - {person: a-duty1, date: "2026-12-03"}
      - {person: 样例值班员二, from: "2026-12-04 08:00", to: "2026-12-04 18:00"}
      - {person: a-duty1, from: "2026-12-04 18:00", to: "2026-12-05 08:00"}
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BEIJING)


def test_persons_and_schedule_load_with_roles_numbers_and_times() -> None:
    roster = load_roster_text(PEOPLE)
    unit = roster.units["bureau_a"]
    assert [(p.id, p.role) for p in unit.persons] == [
        ("a-liaison", "liaison"), ("a-leader", "leader"), ("a-duty1", "duty"), ("a-duty2", "duty")]
    leader = unit.persons[1]
    assert leader.mobile is not None and leader.mobile.address == "+8613900000002"
    assert leader.landline is not None and leader.landline.address == "+863562022719"
    assert [d.person_id for d in unit.duty] == ["a-duty1", "a-duty2", "a-duty1"]  # names resolve to ids
    shown = unit.to_json()["persons"][0]
    assert shown["mobile"] == "+86*******0001" and shown["role_label"] == "联络员"


@pytest.mark.parametrize(("when", "who"), [
    ("2026-12-03 00:00", "a-duty1"), ("2026-12-03 23:59", "a-duty1"), ("2026-12-04 07:59", None),
    ("2026-12-04 08:00", "a-duty2"), ("2026-12-04 18:00", "a-duty1"), ("2026-12-05 08:00", None),
])
def test_who_is_on_duty_is_a_function_of_beijing_time(when: str, who: str | None) -> None:
    unit = load_roster_text(PEOPLE).units["bureau_a"]
    person = duty_person(unit.persons, unit.duty, at(when))
    assert (person.id if person else None) == who


def test_duty_else_liaison_and_leaders() -> None:
    unit = load_roster_text(PEOPLE).units["bureau_a"]
    night = at("2026-12-03 22:00")
    assert [p.id for p in persons_for(unit.persons, unit.duty, ["duty", "liaison"], night)] == ["a-duty1"]
    # nobody scheduled: the first person whose role is duty stands in, else the liaison
    gap = at("2026-12-04 07:00")
    assert [p.id for p in persons_for(unit.persons, unit.duty, ["duty", "liaison"], gap)] == ["a-duty1"]
    no_duty = [p for p in unit.persons if p.role != "duty"]
    assert [p.id for p in persons_for(no_duty, unit.duty, ["duty", "liaison"], gap)] == ["a-liaison"]
    assert [p.id for p in persons_for(unit.persons, (), ["leader"], gap)] == ["a-leader"]
    both = persons_for(unit.persons, unit.duty, ["duty", "liaison"], night, first_only=False)
    assert [p.id for p in both] == ["a-duty1", "a-liaison"]


def test_every_problem_of_persons_and_schedule_is_listed() -> None:
    bad = PEOPLE.replace('"13900000001"', '"1390000"').replace("role: leader", "role: boss")
    bad = bad.replace('to: "2026-12-04 18:00"', 'to: "2026-12-04 19:00"')
    bad += "      - {person: nobody, date: 2026-12-06}\n      - {person: a-duty1}\n"
    with pytest.raises(RosterError) as err:
        load_roster_text(bad)
    text = str(err.value)
    assert "persons[0] mobile" in text and "not a mobile" in text  # 1390000 is a 7-digit landline
    assert "persons[1] role: unknown role 'boss'" in text
    assert "duty[2]: 2026-12-04 18:00–2026-12-05 08:00 overlaps duty[1] (2026-12-04 08:00–2026-12-04 19:00)" in text
    assert "duty[3] person: 'nobody' is not a person of unit 'bureau_a'" in text
    assert "duty[4] date: give either a date or a from–to range" in text


def test_person_ids_are_unique_across_units() -> None:
    two = PEOPLE + """\
  - id: bureau_b
    name: 县乙局
    roles: [member_unit]
    contacts: [{number: "2022720"}]
    persons: [{id: a-leader, name: 样例, role: leader, mobile: "13900000009"}]
"""
    with pytest.raises(RosterError, match="person id 'a-leader' also used by unit 'bureau_a'"):
        load_roster_text(two)


@pytest.mark.parametrize("text", [None, PEOPLE])
def test_dump_reads_back_to_the_same_roster_and_the_same_text(text: str | None) -> None:
    roster = load_roster() if text is None else load_roster_text(text)
    dumped = dump_roster(roster)
    again = load_roster_text(dumped)
    assert dict(again.units) == dict(roster.units)
    assert dict(again.groups) == dict(roster.groups)
    assert dict(again.role_names) == dict(roster.role_names)
    assert dump_roster(again) == dumped


# --- office hours and the policy's person rules ----------------------------------------------

def test_office_hours_follow_the_official_calendar_and_may_span_midnight() -> None:
    from datetime import time

    from gateway.office_hours import in_office_hours

    day, night = (time(8), time(18)), (time(22), time(6))
    assert in_office_hours(at("2026-12-03 10:00"), *day)  # a Thursday
    assert not in_office_hours(at("2026-12-03 18:00"), *day)
    assert not in_office_hours(at("2026-12-05 10:00"), *day)  # Saturday
    assert in_office_hours(at("2026-12-05 10:00"), *day, calendar=False)
    assert not in_office_hours(at("2026-10-01 10:00"), *day)  # National Day, a Thursday
    assert in_office_hours(at("2026-12-03 23:00"), *night) and in_office_hours(at("2026-12-04 05:00"), *night)
    assert in_office_hours(at("2026-12-05 05:00"), *night)  # the night began on Friday, a workday
    assert not in_office_hours(at("2026-12-06 05:00"), *night)  # it began on Saturday
    assert in_office_hours(at("2027-03-03 10:00"), *day)  # a year the calendar lacks: Monday to Friday


def test_person_rules_apply_by_level_and_hours() -> None:
    from gateway.events import Event
    from gateway.policy import load_policy, load_policy_text

    default = load_policy()
    red = Event.model_validate({"type": "warning.issued", "level": "red"})
    yellow = Event.model_validate({"type": "warning.issued", "level": "yellow"})
    assert [r.name for r in default.person_rules(red, at("2026-12-03 10:00"))] == ["red-duty"]
    assert [r.name for r in default.person_rules(yellow, at("2026-12-03 23:00"))] == ["liaison"]
    assert [s.action for s in default.model.escalation] == ["notify_persons", "notify_persons", "notify_hq_office"]
    text = """
drill_audience: {roles: [hq_office]}
rules: [{name: r, audience: {roles: [hq_office]}, channels: [sms]}]
persons:
  - {name: night, when: {levels: [red]}, hours: "off", roles: [duty], channels: [sms]}
"""
    night = load_policy_text(text)
    assert night.person_rules(red, at("2026-12-03 10:00")) == []
    assert [r.name for r in night.person_rules(red, at("2026-12-03 20:00"))] == ["night"]
    assert [r.name for r in night.person_rules(red, at("2026-12-06 10:00"))] == ["night"]  # Sunday


@pytest.mark.parametrize(("snippet", "message"), [
    ("persons: [{name: x, roles: [boss], channels: [sms]}]", "unknown person role 'boss'"),
    ("persons: [{name: x, roles: [duty], channels: [webhook]}]", "persons are reached by sms or voice"),
    ("escalation: [{action: notify_persons, roles: [chief]}]", "unknown person role 'chief'"),
    ("escalation: [{action: repeat_voice, roles: [duty]}]", "roles and channels belong to notify_persons"),
    ("office_hours: {start: '25:00'}", "office_hours.start"),
])
def test_bad_person_rules_are_refused(snippet: str, message: str) -> None:
    from gateway.policy import PolicyError, load_policy_text

    text = "drill_audience: {roles: [hq_office]}\nrules: [{name: r, audience: {roles: [x]}, channels: [sms]}]\n"
    with pytest.raises(PolicyError, match=re.escape(message)):
        load_policy_text(text + snippet + "\n")
