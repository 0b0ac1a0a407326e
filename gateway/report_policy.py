"""The policy's `reports` section: when reports are due, when the schedule reminds and rolls
up, and what each unit's form asks (its actions at the current level, a few figures, free text).

Part of the routing policy (validated with it, reloaded with it on SIGHUP)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.durations import parse_duration
from gateway.events import Level

_Strict = ConfigDict(extra="forbid", frozen=True)
_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
_KEY = r"^[a-z0-9_]{1,32}$"


class ReportAction(BaseModel):
    """One measure the unit reports on: 已落实 / 未落实, with a note."""

    model_config = _Strict
    id: str = Field(pattern=_KEY)
    text: str = Field(min_length=1, max_length=200)
    levels: tuple[Level, ...] = ()  # empty: at every level


class ReportFigure(BaseModel):
    """A count the unit reports (a whole number >= 0), summed in the roll-up."""

    model_config = _Strict
    key: str = Field(pattern=_KEY)
    label: str = Field(min_length=1, max_length=40)
    unit: str = Field(default="", max_length=8)


class ReportForm(BaseModel):
    """The form of the units it names, or else of the units having one of its roles."""

    model_config = _Strict
    name: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    units: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    actions: tuple[ReportAction, ...] = ()
    figures: tuple[ReportFigure, ...] = ()

    def actions_at(self, level: str | None) -> tuple[ReportAction, ...]:
        return tuple(a for a in self.actions if not a.levels or (level is not None and level in a.levels))


_GENERIC = ReportForm(name="generic", actions=(ReportAction(id="measures", text="落实本单位应急响应措施"),))


class ReportsSpec(BaseModel):
    model_config = _Strict
    daily_due: str = Field(default="14:00", pattern=_HHMM)  # Beijing time
    remind_before: str = "30m"  # units that have not reported are reminded this long before the deadline
    rollup_after: str = "30m"  # the HQ office's roll-up (日报), this long after the deadline
    summary_working_days: int = Field(default=2, ge=1, le=10)  # after the lift (Chinese holiday calendar)
    summary_due: str = Field(default="18:00", pattern=_HHMM)
    summary_headline: str = Field(default="请于{due}前报送本次重污染天气应急响应总结评估", max_length=120)
    text_max: int = Field(default=1000, ge=1, le=5000)
    forms: tuple[ReportForm, ...] = ()

    @field_validator("remind_before", "rollup_after")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _unique(self) -> ReportsSpec:
        for form in self.forms:
            ids = [a.id for a in form.actions]
            keys = [f.key for f in form.figures]
            if len(set(ids)) != len(ids) or len(set(keys)) != len(keys):
                raise ValueError(f"report form {form.name}: action ids and figure keys must be unique")
        return self

    def form_for(self, unit_id: str, roles: tuple[str, ...]) -> ReportForm:
        """The form naming the unit, else the first with one of its roles, else a generic one."""
        for form in self.forms:
            if unit_id in form.units:
                return form
        for form in self.forms:
            if set(form.roles) & set(roles):
                return form
        return _GENERIC

    def remind_seconds(self) -> float:
        return parse_duration(self.remind_before).total_seconds()

    def rollup_seconds(self) -> float:
        return parse_duration(self.rollup_after).total_seconds()
