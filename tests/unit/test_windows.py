"""Maintenance windows: calendar math (DST, midnight, exclusions), validation, bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from istio_upgrade.models.spec import ClusterRef, UpgradeSpec, cluster_task_queue
from istio_upgrade.models.windows import MaintenanceWindows, format_instant


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def windows(tz: str = "UTC", weekly: Any = (), exclusions: Any = ()) -> MaintenanceWindows:
    return MaintenanceWindows.model_validate(
        {"timezone": tz, "weekly": list(weekly), "exclusions": list(exclusions)}
    )


NIGHTLY_BERLIN = {"days": ["mon", "tue", "wed", "thu"], "start": "22:00", "duration_minutes": 240}


def test_open_inside_a_window_that_runs_past_midnight() -> None:
    w = windows("Europe/Berlin", [NIGHTLY_BERLIN])
    # Tuesday 2025-01-14 23:30 CET = 22:30 UTC; Wednesday 01:59 CET still the Tuesday window.
    assert w.is_open(utc(2025, 1, 14, 22, 30))
    assert w.is_open(utc(2025, 1, 15, 0, 59))
    assert not w.is_open(utc(2025, 1, 15, 1, 0))  # 02:00 CET: closed (end is exclusive)
    assert w.closes_at(utc(2025, 1, 14, 22, 30)) == utc(2025, 1, 15, 1, 0)
    # Friday: the Thursday window ends Friday 02:00; next opens Monday 22:00 CET.
    assert w.next_open(utc(2025, 1, 17, 12)) == utc(2025, 1, 20, 21, 0)


def test_opening_is_inclusive_and_next_open_of_an_open_instant_is_itself() -> None:
    w = windows("UTC", [{"days": ["mon"], "start": "10:00", "duration_minutes": 60}])
    opens = utc(2025, 1, 13, 10)
    assert w.is_open(opens)
    assert w.next_open(opens) == opens
    assert w.next_open(opens - timedelta(microseconds=1)) == opens
    assert not w.is_open(opens - timedelta(microseconds=1))


def test_aware_inputs_in_any_zone_and_naive_refused() -> None:
    w = windows("UTC", [{"days": ["mon"], "start": "10:00", "duration_minutes": 60}])
    from zoneinfo import ZoneInfo

    tokyo = datetime(2025, 1, 13, 19, 30, tzinfo=ZoneInfo("Asia/Tokyo"))  # 10:30 UTC
    assert w.is_open(tokyo)
    with pytest.raises(ValueError, match="timezone-aware"):
        w.is_open(datetime(2025, 1, 13, 10, 30))


def test_spring_forward_window_lasts_its_elapsed_duration() -> None:
    # Europe/Berlin springs forward on 2025-03-30 at 02:00 CET -> 03:00 CEST.
    w = windows("Europe/Berlin", [{"days": ["sun"], "start": "01:00", "duration_minutes": 180}])
    opens = w.next_open(utc(2025, 3, 29, 12))
    assert opens == utc(2025, 3, 30, 0, 0)  # 01:00 CET
    # Three elapsed hours: 03:00 UTC = 05:00 CEST on the wall clock (not 04:00).
    assert w.closes_at(opens) == utc(2025, 3, 30, 3, 0)
    assert "CEST" in format_instant(utc(2025, 3, 30, 3, 0), "Europe/Berlin")


def test_start_time_skipped_by_spring_forward_opens_an_hour_later_on_the_wall_clock() -> None:
    # America/New_York: 2025-03-09 02:00 EST -> 03:00 EDT; 02:30 does not exist that day.
    w = windows("America/New_York", [{"days": ["sun"], "start": "02:30", "duration_minutes": 60}])
    opens = w.next_open(utc(2025, 3, 8, 12))
    assert opens == utc(2025, 3, 9, 7, 30)  # 02:30 EST = 03:30 EDT
    assert w.describe(opens) == ("2025-03-09 03:30 EDT (America/New_York) / 2025-03-09 07:30 UTC")
    # The week after, 02:30 EDT exists again: 06:30 UTC.
    assert w.next_open(opens + timedelta(hours=2)) == utc(2025, 3, 16, 6, 30)


def test_fall_back_ambiguous_start_opens_at_its_first_occurrence() -> None:
    # America/New_York: 2025-11-02 02:00 EDT -> 01:00 EST; 01:30 happens twice.
    w = windows("America/New_York", [{"days": ["sun"], "start": "01:30", "duration_minutes": 120}])
    opens = w.next_open(utc(2025, 11, 1, 12))
    assert opens == utc(2025, 11, 2, 5, 30)  # 01:30 EDT (the first)
    assert w.closes_at(opens) == utc(2025, 11, 2, 7, 30)  # 02:30 EST: two elapsed hours


def test_local_start_time_stays_put_across_dst_while_utc_moves() -> None:
    w = windows("Europe/Berlin", [{"days": ["sat"], "start": "09:00", "duration_minutes": 60}])
    assert w.next_open(utc(2025, 3, 24)) == utc(2025, 3, 29, 8)  # CET
    assert w.next_open(utc(2025, 3, 31)) == utc(2025, 4, 5, 7)  # CEST


def test_southern_hemisphere_and_half_hour_zone() -> None:
    # Australia/Adelaide: +10:30 in January (daylight time), +09:30 in July.
    w = windows("Australia/Adelaide", [{"days": ["wed"], "start": "00:00", "duration_minutes": 30}])
    assert w.next_open(utc(2025, 1, 13)) == utc(2025, 1, 14, 13, 30)
    assert w.next_open(utc(2025, 7, 14)) == utc(2025, 7, 15, 14, 30)


def test_adjacent_and_overlapping_windows_join() -> None:
    w = windows(
        "UTC",
        [
            {"days": ["mon"], "start": "22:00", "duration_minutes": 120},
            {"days": ["tue"], "start": "00:00", "duration_minutes": 60},
            {"days": ["tue"], "start": "00:30", "duration_minutes": 60},
        ],
    )
    assert w.closes_at(utc(2025, 1, 13, 22, 15)) == utc(2025, 1, 14, 1, 30)


def test_week_long_window_runs_round_the_clock() -> None:
    w = windows("UTC", [{"days": ["mon"], "start": "00:00", "duration_minutes": 7 * 24 * 60}])
    at = utc(2025, 6, 5, 3)
    assert w.is_open(at)
    assert w.closes_at(at) is None  # never closes
    assert w.next_open(at) == at


def test_exclusion_wins_over_a_weekly_window_and_splits_it() -> None:
    w = windows(
        "Europe/Berlin",
        [
            {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": "08:00",
                "duration_minutes": 600,
            }
        ],
        [
            {"start": "2025-12-24", "end": "2025-12-27", "reason": "holidays"},
            {"start": "2025-12-22T12:00", "end": "2025-12-22T13:00"},
        ],
    )
    assert not w.is_open(utc(2025, 12, 24, 10))
    assert w.exclusion_at(utc(2025, 12, 24, 10)).reason == "holidays"  # type: ignore[union-attr]
    assert w.next_open(utc(2025, 12, 24, 10)) == utc(2025, 12, 27, 7)
    # 2025-12-22: open 08:00 CET, cut at 12:00 by the lunch exclusion, open again at 13:00.
    assert w.closes_at(utc(2025, 12, 22, 8)) == utc(2025, 12, 22, 11)
    assert w.next_open(utc(2025, 12, 22, 11, 30)) == utc(2025, 12, 22, 12)
    assert w.closes_at(utc(2025, 12, 22, 12)) == utc(2025, 12, 22, 17)
    # The day before the holidays, the window ends at 18:00 as usual (not at the exclusion).
    assert w.closes_at(utc(2025, 12, 23, 8)) == utc(2025, 12, 23, 17)


def test_exclusion_cuts_a_window_in_flight() -> None:
    w = windows(
        "UTC",
        [{"days": ["fri"], "start": "20:00", "duration_minutes": 600}],
        [{"start": "2025-01-18T00:00", "end": "2025-01-19T00:00"}],
    )
    assert w.closes_at(utc(2025, 1, 17, 21)) == utc(2025, 1, 18)


def test_no_weekly_windows_means_open_outside_the_exclusions() -> None:
    w = windows("UTC", [], [{"start": "2025-06-01", "end": "2025-06-08", "reason": "freeze"}])
    assert w.is_open(utc(2025, 5, 31, 23))
    assert w.closes_at(utc(2025, 5, 31, 23)) == utc(2025, 6, 1)
    assert not w.is_open(utc(2025, 6, 3))
    assert w.next_open(utc(2025, 6, 3)) == utc(2025, 6, 8)
    assert windows().is_open(utc(2030, 1, 1))


def test_closes_at_of_a_closed_instant_is_none() -> None:
    w = windows("UTC", [{"days": ["mon"], "start": "10:00", "duration_minutes": 60}])
    assert w.closes_at(utc(2025, 1, 13, 12)) is None


def test_calendar_closed_for_more_than_a_year_is_refused_naming_the_exclusion() -> None:
    with pytest.raises(ValidationError) as caught:
        windows(
            "UTC",
            [{"days": ["mon"], "start": "10:00", "duration_minutes": 60}],
            [
                {"start": "2025-01-01", "end": "2025-01-02"},
                {"start": "2025-02-01", "end": "2026-03-01"},
            ],
        )
    (error,) = caught.value.errors()
    assert error["loc"] == ("exclusions", 1)
    assert "no open window for more than 366 days" in error["msg"]


def test_exclusions_chained_into_a_year_are_refused() -> None:
    # Consecutive exclusions, none longer than a year, that together leave nothing open.
    chain = [
        {
            "start": f"{2025 + i // 2}-{1 if i % 2 == 0 else 7:02d}-01",
            "end": f"{2025 + (i + 1) // 2}-{7 if i % 2 == 0 else 1:02d}-01",
        }
        for i in range(3)
    ]
    with pytest.raises(ValidationError, match="exclusions"):
        windows("UTC", [], chain)


def test_year_long_exclusion_with_windows_after_it_is_accepted() -> None:
    w = windows(
        "UTC",
        [{"days": ["mon"], "start": "10:00", "duration_minutes": 60}],
        [{"start": "2025-01-01", "end": "2025-12-01"}],
    )
    assert w.next_open(utc(2025, 1, 1)) == utc(2025, 12, 1, 10)


def test_never_open_unvalidated_calendar_answers_none() -> None:
    w = MaintenanceWindows.model_construct(
        timezone="UTC",
        weekly=[],
        exclusions=[
            MaintenanceWindows.model_fields["exclusions"].annotation.__args__[0](  # type: ignore[union-attr]
                start=datetime(2000, 1, 1), end=datetime(2100, 1, 1)
            )
        ],
    )
    assert w.next_open(utc(2025, 1, 1)) is None


@pytest.mark.parametrize(
    ("doc", "loc", "needle"),
    [
        ({"timezone": "Mars/Olympus"}, ("timezone",), "not in the IANA tz database"),
        ({"timezone": "../../etc/passwd"}, ("timezone",), "not an IANA timezone name"),
        ({"timezone": "Europe/Berlin "}, ("timezone",), "not an IANA timezone name"),
        (
            {"weekly": [{"days": [], "start": "10:00", "duration_minutes": 5}]},
            ("weekly", 0, "days"),
            "at least 1",
        ),
        (
            {"weekly": [{"days": ["mon", "Monday"], "start": "10:00", "duration_minutes": 5}]},
            ("weekly", 0, "days"),
            "listed twice",
        ),
        (
            {"weekly": [{"days": ["someday"], "start": "10:00", "duration_minutes": 5}]},
            ("weekly", 0, "days"),
            "not a day of the week",
        ),
        (
            {"weekly": [{"days": ["mon"], "start": "7:00", "duration_minutes": 5}]},
            ("weekly", 0, "start"),
            "HH:MM",
        ),
        (
            {"weekly": [{"days": ["mon"], "start": "24:00", "duration_minutes": 5}]},
            ("weekly", 0, "start"),
            "HH:MM",
        ),
        (
            {"weekly": [{"days": ["mon"], "start": "10:00", "duration_minutes": 0}]},
            ("weekly", 0, "duration_minutes"),
            "greater than or equal to 1",
        ),
        (
            {"weekly": [{"days": ["mon"], "start": "10:00", "duration_minutes": 10081}]},
            ("weekly", 0, "duration_minutes"),
            "less than or equal to 10080",
        ),
        (
            {"exclusions": [{"start": "2025-01-02", "end": "2025-01-02"}]},
            ("exclusions", 0),
            "not after start",
        ),
        (
            {"exclusions": [{"start": "2025-01-02T00:00:00+01:00", "end": "2025-01-03"}]},
            ("exclusions", 0, "start"),
            "without offset",
        ),
        ({"weekly": [], "holidays": []}, ("holidays",), "Extra inputs"),
    ],
)
def test_invalid_calendars_name_the_field(
    doc: dict[str, Any], loc: tuple[Any, ...], needle: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        MaintenanceWindows.model_validate(doc)
    errors = caught.value.errors()
    assert any(e["loc"] == loc and needle in e["msg"] for e in errors), errors


def test_full_day_names_are_accepted_and_normalised() -> None:
    w = windows(
        "UTC", [{"days": ["Sunday", "MONDAY", "wed"], "start": "10:00", "duration_minutes": 5}]
    )
    assert w.weekly[0].days == ["mon", "wed", "sun"]


def test_calendar_round_trips_through_json() -> None:
    w = windows(
        "Europe/Berlin",
        [NIGHTLY_BERLIN],
        [{"start": "2025-12-24", "end": "2025-12-27", "reason": "holidays"}],
    )
    again = MaintenanceWindows.model_validate_json(w.model_dump_json())
    assert again == w
    assert again.next_open(utc(2025, 12, 24)) == w.next_open(utc(2025, 12, 24))


def test_upgrade_spec_errors_are_located_under_windows() -> None:
    doc = {
        "cluster": {"name": "prod"},
        "target": {"version": "1.31.0"},
        "windows": {
            "timezone": "UTC",
            "exclusions": [{"start": "2025-01-01", "end": "2027-01-01"}],
        },
    }
    with pytest.raises(ValidationError, match=r"windows\.exclusions\[0\]"):
        UpgradeSpec.model_validate(doc)
    doc["windows"] = {"timezone": "Nowhere/Town"}
    with pytest.raises(ValidationError, match=r"windows\.timezone"):
        UpgradeSpec.model_validate(doc)
    del doc["windows"]
    assert UpgradeSpec.model_validate(doc).windows is None


def test_cluster_task_queue_validation_and_naming_rule() -> None:
    assert cluster_task_queue("prod-eu-1") == "istio-upgrade.cluster.prod-eu-1"
    assert ClusterRef(name="a", task_queue="istio-upgrade.cluster.a").task_queue
    for bad, needle in [
        ("with space", "without spaces"),
        ("", "without spaces"),
        ("tab\tq", "without spaces"),
        ("/_sys/x", "reserved"),
        ("q" * 201, "at most 200"),
    ]:
        with pytest.raises(ValidationError, match=needle):
            UpgradeSpec.model_validate(
                {"cluster": {"name": "a", "task_queue": bad}, "target": {"version": "1.31.0"}}
            )


def test_next_open_is_fast_enough_for_workflow_tasks() -> None:
    # Many windows and exclusions: a workflow task asks this on every batch.
    import time

    w = windows(
        "Europe/Berlin",
        [
            {"days": ["sat"], "start": f"{h:02d}:00", "duration_minutes": 30}
            for h in range(0, 24, 2)
        ],
        [{"start": f"2025-{m:02d}-01", "end": f"2025-{m:02d}-28"} for m in range(1, 13)],
    )
    began = time.perf_counter()
    for day in range(0, 60, 3):
        w.next_open(utc(2025, 1, 1) + timedelta(days=day))
    assert time.perf_counter() - began < 2.0


def test_documented_example_is_a_valid_spec() -> None:
    from pathlib import Path

    from istio_upgrade.cli.specfile import load_model

    path = Path(__file__).resolve().parents[2] / "docs" / "examples" / "upgrade-windows.yaml"
    spec = load_model(path, UpgradeSpec)
    assert spec.windows is not None and spec.cluster.task_queue == cluster_task_queue("prod-eu1")
    # Tuesday 2026-12-15 23:00 CET is inside the nightly window; the freeze holds until January.
    assert spec.windows.is_open(utc(2026, 12, 15, 22))
    assert spec.windows.next_open(utc(2026, 12, 21, 22)) == utc(2027, 1, 4, 21)
