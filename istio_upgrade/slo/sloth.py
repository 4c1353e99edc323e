"""Read SLO files: our own format or Sloth's ``prometheus/v1`` specs.

Our format is a mapping with ``slos:`` (a list of ``SLOSpec``), or an upgrade spec whose
``gate.slos`` holds them. A Sloth file (``version: prometheus/v1``) maps as follows:
``objective`` is a percentage (99.9 → 0.999); ``sli.events`` becomes a ``custom`` SLI whose
queries must select namespaces with ``{{.namespaces}}`` (the gate compares batch and
baseline namespaces, which a service-wide query cannot); ``sli.plugin`` with id
``istio-availability`` or ``istio-latency`` (option ``threshold_ms``) selects our templates;
``alerting.page_alert.disable`` / ``ticket_alert.disable`` drop those rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from istio_upgrade.models.slo import SLOSpec, default_alerts

SLOTH_VERSION = "prometheus/v1"


class SLOFileError(ValueError):
    """An SLO file is unreadable or invalid; the message names the field and the fix."""


def _sli_from_sloth(where: str, sli: dict[str, Any]) -> dict[str, Any]:
    if "events" in sli:
        events = sli["events"] or {}
        return {
            "template": "custom",
            "error_query": events.get("error_query", ""),
            "total_query": events.get("total_query", ""),
        }
    if "plugin" in sli:
        plugin = sli["plugin"] or {}
        pid = plugin.get("id")
        options = plugin.get("options") or {}
        if pid == "istio-availability":
            return {"template": "istio-availability", **options}
        if pid == "istio-latency":
            return {"template": "istio-latency", **options}
        raise SLOFileError(
            f"{where}.sli.plugin.id {pid!r} is not supported; use istio-availability, "
            "istio-latency or sli.events with error_query/total_query"
        )
    if "raw" in sli:
        raise SLOFileError(
            f"{where}.sli.raw gives a ratio, but the gate needs counts to test significance "
            "and minimum traffic; rewrite it as sli.events with error_query and total_query"
        )
    raise SLOFileError(f"{where}.sli needs events, plugin or raw")


def from_sloth(doc: dict[str, Any], period: str = "30d") -> list[SLOSpec]:
    """Convert a Sloth ``prometheus/v1`` document.

    Args:
        doc: The parsed YAML.
        period: The SLO period (Sloth passes it on its command line, not in the file).

    Returns:
        One ``SLOSpec`` per Sloth SLO.

    Raises:
        SLOFileError: naming the offending field.
    """
    service = str(doc.get("service", ""))
    common = {str(k): str(v) for k, v in (doc.get("labels") or {}).items()}
    out = []
    for i, item in enumerate(doc.get("slos") or []):
        where = f"slos[{i}]"
        objective = item.get("objective")
        if not isinstance(objective, int | float):
            raise SLOFileError(f"{where}.objective must be a percentage such as 99.9")
        alerting = item.get("alerting") or {}
        rows = default_alerts()
        if (alerting.get("page_alert") or {}).get("disable"):
            rows = [r for r in rows if r.severity != "page"]
        if (alerting.get("ticket_alert") or {}).get("disable"):
            rows = [r for r in rows if r.severity != "ticket"]
        labels = {**common, **{str(k): str(v) for k, v in (item.get("labels") or {}).items()}}
        if service:
            labels["service"] = service
        try:
            out.append(
                SLOSpec.model_validate(
                    {
                        "name": item.get("name", ""),
                        "objective": objective / 100.0,
                        "period": period,
                        "sli": _sli_from_sloth(where, item.get("sli") or {}),
                        "alerts": rows,
                        "labels": labels,
                    }
                )
            )
        except ValidationError as exc:
            raise SLOFileError(f"{where} ({item.get('name')!r}): {_explain(exc)}") from exc
    if not out:
        raise SLOFileError("slos: the Sloth file declares no SLO")
    return out


def _explain(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
    )


def parse_slos(doc: Any, period: str = "30d") -> list[SLOSpec]:
    """SLO specs from a parsed document in either format (see the module docstring)."""
    if not isinstance(doc, dict):
        raise SLOFileError("an SLO file must be a mapping with slos: or a Sloth spec")
    if doc.get("version") == SLOTH_VERSION:
        return from_sloth(doc, period)
    if "version" in doc:
        raise SLOFileError(f"version {doc['version']!r} is unknown; Sloth files use prometheus/v1")
    raw = doc.get("slos")
    if raw is None and isinstance(doc.get("gate"), dict):
        raw = doc["gate"].get("slos")
    if not isinstance(raw, list) or not raw:
        raise SLOFileError("slos: list at least one SLO (name, objective, sli)")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(SLOSpec.model_validate(item))
        except ValidationError as exc:
            raise SLOFileError(f"slos[{i}]: {_explain(exc)}") from exc
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SLOFileError(f"slos: names must be unique, {', '.join(dupes)} repeats")
    return out


def load_slos(path: Path | str, period: str = "30d") -> list[SLOSpec]:
    """Read an SLO file (ours or Sloth's).

    Raises:
        SLOFileError: unreadable file or invalid content, naming the field.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SLOFileError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SLOFileError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return parse_slos(doc, period)
    except SLOFileError as exc:
        raise SLOFileError(f"{path}: {exc}") from exc
