"""Maintenance windows: when an upgrade may start work that touches workloads.

A ``MaintenanceWindows`` calendar is a timezone, weekly windows (days of the week, a local
start time and a duration) and exclusions (local date/time ranges in which nothing starts,
e.g. a change freeze). It is part of ``UpgradeSpec`` (a single-cluster upgrade) and of the
fleet's spec; the workflows ask it three questions:

- ``is_open(at)``: may a step start at ``at``?
- ``next_open(at)``: when does it open next (``at`` itself when open)?
- ``closes_at(at)``: when does the open stretch containing ``at`` end?

Semantics (documented in ``docs/fleet.md``, "Maintenance windows"):

- A weekly window opens at its local ``start`` on each of its ``days`` and stays open for
  ``duration_minutes`` of *elapsed* time, so a window may run past midnight and a window
  spanning a DST change lasts exactly its duration (its local end moves by an hour).
- A local start time that does not exist (skipped by a spring-forward change) opens at the
  same offset as before the change, i.e. one hour later on the wall clock (RFC 5545's rule);
  an ambiguous one (repeated by a fall-back change) opens at its first occurrence. Exclusion
  bounds follow the same rules.
- Exclusions are half-open ``[start, end)`` local ranges and win over weekly windows.
- ``weekly: []`` means no weekly restriction: open at all times outside the exclusions.
- Validation rejects a calendar that, from the start of any exclusion, stays closed for more
  than a year (it would hold an upgrade forever), naming the exclusion.

Everything here is pure and deterministic (no clock, no I/O besides the tz database that
``zoneinfo`` reads once per zone and caches), so workflows call it with ``workflow.now()``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "DAYS",
    "MAX_EXCLUSIONS",
    "MAX_WEEKLY_WINDOWS",
    "NEVER_OPEN_HORIZON",
    "Exclusion",
    "MaintenanceWindows",
    "WeeklyWindow",
    "format_instant",
]

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names as the spec writes them, in ``date.weekday()`` order."""
MAX_WEEKLY_WINDOWS = 50
MAX_EXCLUSIONS = 500
"""Bounds keeping the calendar (stored in every workflow's input) a few tens of KB."""
MINUTES_PER_WEEK = 7 * 24 * 60
NEVER_OPEN_HORIZON = timedelta(days=366)
"""A calendar must open again within this long after the start of any exclusion."""
_SEARCH_HORIZON = timedelta(days=400)
"""How far ``next_open``/``closes_at`` look: the validated bound plus a week's slack."""
_CHUNK = timedelta(days=7)
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_DAY_ALIASES = {
    **{d: d for d in DAYS},
    **{
        full: short
        for full, short in zip(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
            DAYS,
            strict=True,
        )
    },
}


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        hide_input_in_errors=True,
        frozen=True,
    )


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def check_timezone(name: str, field: str = "timezone") -> str:
    """``name`` when it is an IANA timezone the tz database knows, else a ValueError."""
    if (
        not name
        or len(name) > 64
        or not name.isascii()
        or any(unicodedata.category(c) in {"Cc", "Cf"} or c.isspace() for c in name)
        or name.startswith(("/", "."))
        or ".." in name
    ):
        raise ValueError(
            f"{field} {name!r} is not an IANA timezone name; write it like Europe/Berlin, "
            "America/New_York or UTC"
        )
    try:
        _zone(name)
    except Exception:  # ZoneInfoNotFoundError (a KeyError), ValueError, OSError
        raise ValueError(
            f"{field} {name!r} is not in the IANA tz database; write it like Europe/Berlin, "
            "America/New_York or UTC (see `timedatectl list-timezones`)"
        ) from None
    return name


def _aware(at: datetime, what: str = "at") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (e.g. workflow.now()), got {at!r}")
    return at.astimezone(UTC)


def _local_to_utc(value: datetime, zone: tzinfo) -> datetime:
    # fold=0: a skipped local time uses the offset before the change (it lands an hour
    # later on the wall clock), a repeated one its first occurrence (PEP 495).
    return value.replace(tzinfo=zone, fold=0).astimezone(UTC)


def format_instant(at: datetime, timezone: str) -> str:
    """``at`` in ``timezone`` and in UTC, as progress texts show it, e.g.
    ``2025-03-30 03:00 CEST (Europe/Berlin) / 2025-03-30 01:00 UTC``."""
    utc = _aware(at)
    local = utc.astimezone(_zone(timezone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({timezone}) / {utc:%Y-%m-%d %H:%M} UTC"


class WeeklyWindow(_Strict):
    """A window that opens every week on ``days`` at local time ``start``."""

    days: list[str] = Field(min_length=1, max_length=7)
    """Days of the week the window opens on: ``mon`` … ``sun`` (full names are accepted)."""
    start: str
    """Local opening time, ``HH:MM`` (24 h) in the calendar's timezone."""
    duration_minutes: int = Field(ge=1, le=MINUTES_PER_WEEK)
    """How long the window stays open, in elapsed minutes (at most a week); may run past
    midnight and across a DST change."""

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        days: list[str] = []
        for item in value:
            short = _DAY_ALIASES.get(item.strip().lower()) if isinstance(item, str) else None
            if short is None:
                raise ValueError(
                    f"days: {item!r} is not a day of the week; write mon, tue, wed, thu, fri, "
                    "sat or sun"
                )
            if short in days:
                raise ValueError(f"days: {short} is listed twice; list each day once")
            days.append(short)
        return sorted(days, key=DAYS.index)

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        if not _HH_MM.fullmatch(value):
            raise ValueError(
                f"start {value!r} is not a local time HH:MM (24 h, e.g. 22:00 or 02:30)"
            )
        return value

    @property
    def start_time(self) -> time:
        hours, minutes = self.start.split(":")
        return time(int(hours), int(minutes))

    @property
    def weekdays(self) -> frozenset[int]:
        """``days`` as ``date.weekday()`` numbers (Monday = 0)."""
        return frozenset(DAYS.index(d) for d in self.days)


class Exclusion(_Strict):
    """A local date/time range in which no window opens (a freeze, a holiday)."""

    start: datetime
    """First local moment excluded, without offset (``2025-12-24T00:00`` or ``2025-12-24``),
    in the calendar's timezone."""
    end: datetime
    """First local moment no longer excluded (exclusive), same form as ``start``."""
    reason: str = Field("", max_length=200)
    """Why, shown when an upgrade waits for it (e.g. "year-end freeze")."""

    @field_validator("start", "end", mode="before")
    @classmethod
    def _midnight(cls, value: Any) -> Any:
        # A bare date means its local midnight.
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            return f"{value.strip()}T00:00:00"
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time())
        return value

    @field_validator("start", "end")
    @classmethod
    def _naive(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise ValueError(
                "must be a local date/time without offset or Z (e.g. 2025-12-24T00:00): it is "
                "read in the calendar's timezone"
            )
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Exclusion:
        if self.end <= self.start:
            raise ValueError(
                f"end {self.end.isoformat()} is not after start {self.start.isoformat()}; "
                "end is the first moment no longer excluded"
            )
        return self


class MaintenanceWindows(_Strict):
    """When an upgrade may start work: weekly windows minus exclusions, in one timezone.

    Pure and deterministic: safe to call inside a workflow with ``workflow.now()``.
    """

    timezone: str = "UTC"
    """IANA timezone the windows and exclusions are written in (e.g. ``Europe/Berlin``)."""
    weekly: list[WeeklyWindow] = Field(default_factory=list, max_length=MAX_WEEKLY_WINDOWS)
    """Weekly windows; overlapping or adjacent ones join. Empty: open at all times outside
    the exclusions."""
    exclusions: list[Exclusion] = Field(default_factory=list, max_length=MAX_EXCLUSIONS)
    """Local ranges in which nothing starts, even inside a weekly window."""

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _opens(self) -> MaintenanceWindows:
        # Deterministic (no clock): the longest closed stretches start at an exclusion's
        # start (without exclusions a weekly window opens within a week).
        for index, exclusion in enumerate(self.exclusions):
            start = self._utc(exclusion.start)
            opens = self._next_open(start, NEVER_OPEN_HORIZON)
            if opens is None:
                raise ValidationError.from_exception_data(
                    "MaintenanceWindows",
                    [
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "never_open",
                                "{message}",
                                {
                                    "message": f"{exclusion.start.isoformat()} to "
                                    f"{exclusion.end.isoformat()} leaves no open window for "
                                    f"more than {NEVER_OPEN_HORIZON.days} days: an upgrade "
                                    "would wait forever; shorten the exclusion or add weekly "
                                    "windows outside it"
                                },
                            ),
                            loc=("exclusions", index),
                            input=None,
                        )
                    ],
                )
        return self

    # -- Questions ----------------------------------------------------------------------

    def is_open(self, at: datetime) -> bool:
        """Whether a step may start at ``at`` (timezone-aware)."""
        utc = _aware(at)
        return any(s <= utc < e for s, e in self._intervals(utc, utc + timedelta(microseconds=1)))

    def next_open(self, at: datetime) -> datetime | None:
        """The first moment at or after ``at`` when the windows are open (``at`` itself when
        open now), in UTC; None when they never open within 400 days (validation rejects
        such calendars, so None means a calendar built without validation)."""
        return self._next_open(_aware(at), _SEARCH_HORIZON)

    def closes_at(self, at: datetime) -> datetime | None:
        """When the open stretch containing ``at`` ends (joined windows count as one), in
        UTC; None when closed at ``at`` or when it stays open for the next 400 days (e.g.
        open round the clock with no exclusion ahead). Tell the two apart with ``is_open``."""
        utc = _aware(at)
        if not self.is_open(utc):
            return None
        cursor = utc
        while cursor < utc + _SEARCH_HORIZON:
            upto = cursor + _CHUNK
            intervals = self._intervals(cursor, upto)
            if not intervals or intervals[0][0] > cursor:
                return cursor
            end = intervals[0][1]
            if end < upto:
                return end
            cursor = upto
        return None

    def describe(self, at: datetime) -> str:
        """``at`` formatted in this calendar's timezone and in UTC (see ``format_instant``)."""
        return format_instant(at, self.timezone)

    def exclusion_at(self, at: datetime) -> Exclusion | None:
        """The exclusion covering ``at``, if any (to say why a window is closed)."""
        utc = _aware(at)
        for exclusion in self.exclusions:
            if self._utc(exclusion.start) <= utc < self._utc(exclusion.end):
                return exclusion
        return None

    # -- Calendar math (UTC intervals) ----------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def _utc(self, local: datetime) -> datetime:
        return _local_to_utc(local, self.zone)

    def _next_open(self, utc: datetime, horizon: timedelta) -> datetime | None:
        cursor = utc
        while cursor < utc + horizon:
            intervals = self._intervals(cursor, min(cursor + _CHUNK, utc + horizon))
            if intervals:
                return intervals[0][0]
            cursor += _CHUNK
        return None

    def _occurrences(self, lo: datetime, hi: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Weekly openings (UTC, with their ends) whose interval meets ``[lo, hi)``."""
        zone = self.zone
        longest = max(w.duration_minutes for w in self.weekly)
        first = lo.astimezone(zone).date() - timedelta(days=longest // (24 * 60) + 2)
        last = hi.astimezone(zone).date() + timedelta(days=1)
        day = first
        while day <= last:
            weekday = day.weekday()
            for window in self.weekly:
                if weekday in window.weekdays:
                    opens = _local_to_utc(datetime.combine(day, window.start_time), zone)
                    closes = opens + timedelta(minutes=window.duration_minutes)
                    if opens < hi and closes > lo:
                        yield opens, closes
            day += timedelta(days=1)

    def _intervals(self, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
        """The open intervals within ``[lo, hi)`` (UTC, sorted, joined, clipped)."""
        raw = sorted(self._occurrences(lo, hi)) if self.weekly else [(lo, hi)]
        joined: list[tuple[datetime, datetime]] = []
        for start, end in raw:
            start, end = max(start, lo), min(end, hi)
            if joined and start <= joined[-1][1]:
                joined[-1] = (joined[-1][0], max(joined[-1][1], end))
            else:
                joined.append((start, end))
        for exclusion in self.exclusions:
            ex_start, ex_end = self._utc(exclusion.start), self._utc(exclusion.end)
            if ex_start >= hi or ex_end <= lo:
                continue
            kept: list[tuple[datetime, datetime]] = []
            for start, end in joined:
                if ex_end <= start or ex_start >= end:
                    kept.append((start, end))
                    continue
                if start < ex_start:
                    kept.append((start, ex_start))
                if ex_end < end:
                    kept.append((ex_end, end))
            joined = kept
        return [(s, e) for s, e in joined if s < e]
