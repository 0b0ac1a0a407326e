"""Roster: the packaged Zezhou roster against the plan's seed text, validation, resolver."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from contacts import (
    Audience,
    Contact,
    Endpoint,
    Roster,
    RosterError,
    StaticResolver,
    UnknownAudience,
    load_roster,
    load_roster_text,
    mask,
    parse_number,
)

SEED = Path(__file__).resolve().parents[2] / "shared/seeds/zezhou-emergency-plan-annexes.txt"
CONTACTS_PKG = Path(__file__).resolve().parents[1] / "contacts"


@dataclass(frozen=True)
class SeedEntry:
    name: str
    number: str


def _squash(text: str) -> str:
    # The PDF's line wrapping leaves spaces inside names ("晋城市生态环境局 值班室").
    return re.sub(r"\s+", "", text)


def _seed_text() -> str:
    if not SEED.exists():
        pytest.skip(f"seed file absent: {SEED}")
    return SEED.read_text(encoding="utf-8")


def _seed_directory() -> list[SeedEntry]:
    """The 附件 6 contact directory: 4 tab-separated columns (name, number, name, number)."""
    section = _seed_text().split("泽州县重污染天气应急联系方式", 1)[1]
    entries: list[SeedEntry] = []
    for line in section.splitlines():
        cells = line.split("\t")
        if len(cells) != 4 or cells[1].strip() == "联系电话":
            continue
        for name, number in ((cells[0], cells[1]), (cells[2], cells[3])):
            entries.append(SeedEntry(_squash(name), number.strip()))
    return entries


def _seed_duties() -> list[tuple[str, str]]:
    """(unit name, duties) rows of the 附件 2 duties table."""
    section = _seed_text().split("泽州县重污染天气应急工作组组成及职责", 1)[0]
    rows = [line.split("\t") for line in section.splitlines()]
    return [
        (_squash(r[0]), r[1].strip()) for r in rows if len(r) == 2 and r[1].strip() and r[0] != "单位名称"
    ]


def _seed_groups() -> dict[str, tuple[str, list[str], str]]:
    """Working-group table: group name -> (lead name, member names, duties)."""
    section = _seed_text().split("泽州县重污染天气应急工作组组成及职责", 1)[1]
    section = section.split("泽州县重污染天气应急响应流程图", 1)[0]
    groups = {}
    for line in section.splitlines():
        cells = line.split("\t")
        if len(cells) == 4 and cells[0] != "工作组":
            members = [_squash(m) for m in cells[2].split("、")]
            groups[cells[0]] = (_squash(cells[1]), members, _squash(cells[3]))
    return groups


def _expected_e164(number: str) -> tuple[str, str]:
    # Written independently of contacts.numbers so a normalisation bug can't hide itself.
    if len(number) == 11 and number.startswith("1"):
        return "mobile", "+86" + number
    assert len(number) == 7, number
    return "fixed", "+86356" + number


@pytest.fixture(scope="module")
def roster() -> Roster:
    return load_roster()


# --- the packaged roster against the seed ---------------------------------------------------


def test_packaged_roster_loads_with_forty_units(roster: Roster) -> None:
    assert len(roster.units) == 40
    assert roster.source == "contacts/rosters/zezhou.yaml"
    assert re.fullmatch(r"[0-9a-f]{64}", roster.version)


def test_every_directory_entry_is_one_unit_with_its_number(roster: Roster) -> None:
    entries = _seed_directory()
    assert len(entries) == 40
    assert {e.name for e in entries} == {u.name for u in roster.units.values()}
    for entry in entries:
        unit = roster.find(entry.name)
        assert unit is not None and unit.name == entry.name
        kind, e164 = _expected_e164(entry.number)
        assert [(c.raw, c.address, c.kind, c.label) for c in unit.contacts] == [
            (entry.number, e164, kind, "值班电话")
        ]


def test_duties_are_verbatim_from_the_seed(roster: Roster) -> None:
    rows = _seed_duties()
    assert len(rows) == 23  # 20 bureaus/companies, the HQ office, the branch, 各乡镇人民政府
    for name, duties in rows:
        units = roster.units.values() if name == "各乡镇人民政府" else [roster.find(name)]
        targets = [u for u in units if u is not None and (name != "各乡镇人民政府" or "township" in u.roles)]
        assert targets, name
        for unit in targets:
            assert duties in unit.duties, (name, unit.id)
    for duty_office in ("jincheng_ecology_duty_office", "county_party_committee_duty_office"):
        assert roster.units[duty_office].duties == ""


def test_sixteen_townships_and_role_holders(roster: Roster) -> None:
    by_role = {role: [u.id for u in roster.units.values() if role in u.roles] for role in roster.roles()}
    assert len(by_role["township"]) == 16
    assert all(u.startswith("township_") for u in by_role["township"])
    assert by_role["hq"] == ["county_party_committee_duty_office", "county_government_duty_office"]
    assert by_role["upward"] == ["jincheng_ecology_duty_office"]
    assert len(by_role["duty_office"]) == 3
    assert by_role["hq_office"] == ["zezhou_ecology_branch"]
    assert by_role["media"] == ["county_media_centre"]
    assert by_role["carrier"] == ["china_mobile_zezhou", "china_unicom_zezhou", "china_telecom_zezhou"]
    assert by_role["power"] == ["state_grid_zezhou_power_supply"]
    assert by_role["meteorology"] == ["county_meteorological_bureau"]
    assert by_role["armed_forces"] == ["county_armed_forces_department"]
    assert set(by_role) == set(roster.role_names)


def test_working_groups_match_the_seed(roster: Roster) -> None:
    ids = {
        "综合协调组": "coordination",
        "技术支持组": "technical",
        "督导检查组": "inspection",
        "宣传报道组": "publicity",
    }
    seed = _seed_groups()
    assert set(seed) == set(ids)
    assert list(roster.groups) == list(ids.values())
    for name, (lead, members, duties) in seed.items():
        group = roster.groups[ids[name]]
        assert group.name == name
        assert group.duties == duties
        lead_unit = roster.find(lead)
        assert lead_unit is not None and group.lead == lead_unit.id
        found = [roster.find(m) for m in members]
        assert list(group.members) == [u.id for u in found if u is not None]
        assert len(group.members) == len(members)
    assert roster.groups["inspection"].lead == "zezhou_ecology_branch"
    assert roster.groups["publicity"].lead == "county_media_centre"
    assert roster.units["county_meteorological_bureau"].groups == ("coordination", "technical", "inspection")
    assert roster.units["zezhou_ecology_branch"].groups == tuple(ids.values())
    assert roster.units["township_xiacun"].groups == ()


def test_shared_number_2028156_is_a_warning(roster: Roster) -> None:
    [warning] = [w for w in roster.warnings if "2028156" in w]
    assert "county_energy_bureau" in warning and "county_offices_service_centre" in warning


@pytest.mark.parametrize(
    ("spelling", "unit_id"),
    [
        ("县发展改革和科技局", "county_development_reform_commission"),
        ("县发展和改革委员会", "county_development_reform_commission"),
        ("县指挥部办公室", "zezhou_ecology_branch"),
        ("晋城市生态环境局 泽州分局", "zezhou_ecology_branch"),
        ("国网山西省电力公司泽州供电公司", "state_grid_zezhou_power_supply"),
        ("中国联通泽州分公司", "china_unicom_zezhou"),
        ("中国移动通信集团山西有限公司泽州分公司", "china_mobile_zezhou"),
        ("中国电信股份有限公司泽州分公司", "china_telecom_zezhou"),
        ("住房和城乡建设管理局", "county_housing_construction_bureau"),
        ("county_media_centre", "county_media_centre"),
    ],
)
def test_find_by_alias_name_or_id(roster: Roster, spelling: str, unit_id: str) -> None:
    unit = roster.find(spelling)
    assert unit is not None and unit.id == unit_id


def test_find_unknown_is_none(roster: Roster) -> None:
    assert roster.find("县不存在局") is None


def test_to_json_and_extra_contacts(roster: Roster) -> None:
    first = roster.to_json()[0]
    assert first["id"] == "jincheng_ecology_duty_office"
    assert first["contacts"] == [
        {"kind": "fixed", "address": "+863562026736", "raw": "2026736", "label": "值班电话"}
    ]
    hook = Contact(kind="url", address="https://media.example/hook", raw="https://media.example/hook")
    probe = Contact(kind="url", address="http://127.0.0.1:9/drill")
    extended = roster.with_extra_contacts({"county_media_centre": [hook], "*": [probe]})
    assert extended.units["county_media_centre"].contacts[-2:] == (probe, hook)
    assert extended.units["township_dayang"].contacts[-1] == probe
    assert roster.units["county_media_centre"].contacts[-1].kind == "fixed"  # original untouched
    assert extended.version != roster.version
    with pytest.raises(KeyError, match="no_such_unit"):
        roster.with_extra_contacts({"no_such_unit": [hook]})


# --- validation -----------------------------------------------------------------------------

VALID = """\
roles:
  member_unit: 成员单位
  media: 融媒体
groups:
  - id: publicity
    name: 宣传报道组
    lead: media_centre
    members: [bureau_a]
    duties: 宣传
units:
  - id: media_centre
    name: 县融媒体中心
    roles: [member_unit, media]
    contacts:
      - {number: "3032128", label: 值班电话}
      - {url: "https://media.example/hook", label: webhook}
  - id: bureau_a
    name: 县甲局
    aliases: [甲局]
    roles: [member_unit]
    duties: 负责甲。
    contacts:
      - {number: "13903560366", label: 值班电话}
"""


def _errors(text: str) -> list[str]:
    with pytest.raises(RosterError) as info:
        load_roster_text(text, "test.yaml")
    assert str(info.value) == "\n".join(info.value.messages)
    return info.value.messages


def test_minimal_roster_is_valid() -> None:
    roster = load_roster_text(VALID)
    assert roster.units["media_centre"].contacts[1].kind == "url"
    assert roster.units["bureau_a"].groups == ("publicity",)
    assert roster.warnings == ()


def test_unknown_role_names_unit_and_role() -> None:
    [message] = _errors(VALID.replace("roles: [member_unit]\n", "roles: [member_unit, mayor]\n"))
    assert "unit 'bureau_a'" in message and "unknown role 'mayor'" in message


def test_unknown_group_member_names_group_and_id() -> None:
    [message] = _errors(VALID.replace("members: [bureau_a]", "members: [bureau_a, ghost_bureau]"))
    assert "group 'publicity'" in message and "'ghost_bureau'" in message


def test_group_member_given_by_name_gets_a_hint() -> None:
    [message] = _errors(VALID.replace("members: [bureau_a]", "members: [甲局]"))
    assert "did you mean 'bureau_a'" in message


def test_duplicate_unit_id() -> None:
    messages = _errors(VALID.replace("id: bureau_a", "id: media_centre"))
    assert any("duplicate unit id 'media_centre'" in m for m in messages)


def test_malformed_number_names_unit_and_number() -> None:
    [message] = _errors(VALID.replace('"13903560366"', '"12345"'))
    assert "unit 'bureau_a'" in message and "'12345'" in message


def test_unquoted_number_is_rejected() -> None:
    [message] = _errors(VALID.replace('"3032128"', "3032128"))
    assert "unit 'media_centre'" in message and "must be a string" in message


def test_duplicate_alias_across_units() -> None:
    [message] = _errors(VALID.replace("aliases: [甲局]", "aliases: [县融媒体中心]"))
    assert "'县融媒体中心'" in message and "media_centre" in message


def test_missing_field_and_bad_url() -> None:
    text = VALID.replace("    name: 县甲局\n", "").replace("https://media.example/hook", "ftp:/x")
    messages = _errors(text)
    assert any("unit 'bureau_a'" in m and "missing field 'name'" in m for m in messages)
    assert any("malformed url 'ftp:/x'" in m for m in messages)


def test_all_problems_are_reported_at_once() -> None:
    text = (
        VALID.replace("roles: [member_unit]\n", "roles: [mayor]\n")
        .replace("members: [bureau_a]", "members: [ghost_bureau]")
        .replace('"13903560366"', '"12345"')
    )
    messages = _errors(text)
    assert len(messages) == 3
    assert all(m.startswith("test.yaml: ") for m in messages)


def test_yaml_syntax_and_duplicate_keys() -> None:
    assert "YAML syntax error" in _errors("units: [unclosed\n")[0]
    [message] = _errors(VALID.replace("  media: 融媒体\n", "  media: 融媒体\n  media: 又一个\n"))
    assert "duplicate key 'media'" in message


def test_load_roster_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="cannot read roster"):
        load_roster(tmp_path / "absent.yaml")
    path = tmp_path / "r.yaml"
    path.write_text(VALID, encoding="utf-8")
    assert load_roster(path).source == str(path)


# --- numbers --------------------------------------------------------------------------------


def test_parse_number_kinds() -> None:
    assert parse_number("2026736") == Contact("fixed", "+863562026736", "2026736")
    assert parse_number("13903560366") == Contact("mobile", "+8613903560366", "13903560366")
    assert parse_number("0356-2026736").address == "+863562026736"
    for bad in ("", "12345", "not a number", "400-123-4567"):
        with pytest.raises(ValueError):
            parse_number(bad)


def test_mask() -> None:
    assert mask("+863562026736") == "+86******6736"
    assert mask("+8613903560366") == "+86*******0366"
    assert mask("garbage") == "***bage"
    assert "13903560366" not in mask("13903560366")


# --- resolver -------------------------------------------------------------------------------


async def test_resolve_union_in_roster_order_without_duplicates(roster: Roster) -> None:
    resolver = StaticResolver(roster)
    audience = Audience(
        roles=("carrier",), groups=("technical",), units=("县发展改革和科技局", "china_mobile_zezhou")
    )
    recipients = await resolver.resolve(audience)
    assert [r.unit_id for r in recipients] == [
        "zezhou_ecology_branch",
        "county_development_reform_commission",
        "county_meteorological_bureau",
        "china_mobile_zezhou",
        "china_unicom_zezhou",
        "china_telecom_zezhou",
    ]
    assert resolver.version == roster.version and resolver.roster is roster


async def test_resolve_endpoints_by_contact_kind(roster: Roster) -> None:
    resolver = StaticResolver(roster)
    fixed, mobile = await resolver.resolve(Audience(units=("china_mobile_zezhou", "county_media_centre")))
    assert mobile.endpoints == (Endpoint("sms", "+8613903560366"), Endpoint("voice", "+8613903560366"))
    assert fixed.endpoints == (Endpoint("voice", "+863563032128"),)
    assert fixed.roles == ("member_unit", "media") and fixed.groups == ("coordination", "publicity")
    hooked = StaticResolver(roster.with_extra_contacts({"*": [Contact("url", "https://x.example/h")]}))
    [duty] = await hooked.resolve(Audience(roles=("upward",)))
    assert duty.endpoints[-1] == Endpoint("webhook", "https://x.example/h")


async def test_resolve_townships_and_empty(roster: Roster) -> None:
    resolver = StaticResolver(roster)
    # A bare string or a list (as from YAML/JSON) is coerced to a tuple, not split into characters.
    assert len(await resolver.resolve(Audience(roles="township"))) == 16  # type: ignore[arg-type]
    assert Audience(groups=["publicity"]).groups == ("publicity",)  # type: ignore[arg-type]
    assert Audience().is_empty and not Audience(units=("county_media_centre",)).is_empty
    assert await resolver.resolve(Audience()) == []


async def test_unknown_audience_names_everything(roster: Roster) -> None:
    resolver = StaticResolver(roster)
    with pytest.raises(UnknownAudience) as info:
        await resolver.resolve(Audience(roles=("hq", "mayor"), groups=("cleanup",), units=("县不存在局",)))
    assert info.value.roles == ("mayor",) and info.value.groups == ("cleanup",)
    assert {"'mayor'", "'cleanup'", "'县不存在局'"} <= set(re.findall(r"'[^']+'", str(info.value)))
    assert isinstance(info.value, ValueError)


def test_contacts_never_imports_gateway_or_channels() -> None:
    for module in CONTACTS_PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not [n for n in names if n.split(".")[0] in {"gateway", "channels"}], module


def test_webhook_contacts_may_ask_for_cap_and_nothing_else() -> None:
    roster = load_roster_text(VALID.replace('label: webhook}', 'label: webhook, format: cap}'))
    assert roster.units["media_centre"].contacts[1].format == "cap"
    assert roster.units["media_centre"].to_json()["contacts"][1]["format"] == "cap"
    [message] = _errors(VALID.replace('label: webhook}', 'label: webhook, format: rss}'))
    assert "format 'rss'" in message
