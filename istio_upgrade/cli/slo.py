"""``istio-upgrade slo``: render alerting rules from SLO specs, or check the gate once."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click
from rich.console import Console

from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.cli.slo_check import check_once, render_result
from istio_upgrade.cli.specfile import SpecError, load_model
from istio_upgrade.istio.naming import is_dns1123_label
from istio_upgrade.models.prometheus_auth import PrometheusAuth
from istio_upgrade.models.slo import SLOSpec, parse_duration
from istio_upgrade.slo.rules import dump_yaml, render_crd, render_rules
from istio_upgrade.slo.sloth import SLOFileError, load_slos

VERDICT_EXIT = {"PASS": ExitCode.OK, "FAIL": ExitCode.FAILED, "INCONCLUSIVE": ExitCode.WAITING}
"""``slo check`` exits 0 on PASS, 4 on FAIL and 8 on INCONCLUSIVE."""


def _load(path: str, period: str) -> list[SLOSpec]:
    try:
        return load_slos(path, period)
    except SLOFileError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(int(ExitCode.USAGE)) from exc


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _seconds(option: str, value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc
    if seconds < 1:
        raise click.BadParameter(f"{value!r} is shorter than 1s; use e.g. 5m", param_hint=option)
    return seconds


@click.group()
def slo() -> None:
    """SLOs: alerting rules for Prometheus and one-shot checks of the upgrade gate."""


@slo.command()
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False),
    help="SLO file: ours (slos:) or a Sloth prometheus/v1 spec.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["rules", "crd"]),
    default="rules",
    show_default=True,
    help="A plain rule file or a PrometheusRule resource.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write here instead of stdout.",
)
@click.option(
    "--period",
    default="30d",
    show_default=True,
    help="SLO period for Sloth files (ours carry their own).",
)
@click.option(
    "--name",
    default="istio-upgrade-slos",
    show_default=True,
    help="metadata.name of the PrometheusRule.",
)
@click.option(
    "--namespace",
    default="istio-system",
    show_default=True,
    help="metadata.namespace of the PrometheusRule.",
)
def rules(path: str, fmt: str, output: str | None, period: str, name: str, namespace: str) -> None:
    """Recording rules and multiwindow multi-burn-rate alerts (page 14.4x/6x, ticket 3x/1x)."""
    slos = _load(path, period)
    doc = render_crd(slos, name, namespace) if fmt == "crd" else render_rules(slos)
    text = dump_yaml(doc)
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)
        click.echo(f"wrote {len(slos)} SLO(s) to {output}", err=True)


@slo.command()
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False),
    help="SLO file: ours (slos:) or a Sloth prometheus/v1 spec.",
)
@click.option(
    "--prometheus", required=True, help="Prometheus base URL, e.g. http://127.0.0.1:9090."
)
@click.option(
    "--prometheus-auth",
    "auth_path",
    type=click.Path(dir_okay=False),
    help="YAML file with the credentials' references, as in spec.gate.prometheus_auth "
    "(authorization, basic_auth, http_headers, tls_config); the secrets are read from the "
    "files and environment variables it names.",
)
@click.option("--namespaces", required=True, help="Namespaces to judge (comma-separated).")
@click.option("--baseline", default="", help="Namespaces to compare with (comma-separated).")
@click.option("--window", default="5m", show_default=True, help="Window ending now, e.g. 5m.")
@click.option(
    "--short-window",
    default="5m",
    show_default=True,
    help="Short window of the multiwindow rule (capped by --window).",
)
@click.option(
    "--revision", default="", help="Istio revision whose control-plane counters to check."
)
@click.option("--period", default="30d", show_default=True, help="SLO period for Sloth files.")
@click.option("--show-queries", is_flag=True, help="Print the PromQL that produced the numbers.")
def check(
    path: str,
    prometheus: str,
    auth_path: str | None,
    namespaces: str,
    baseline: str,
    window: str,
    short_window: str,
    revision: str,
    period: str,
    show_queries: bool,
) -> None:
    """Judge namespaces once, like the upgrade gate does; exit 0 PASS, 4 FAIL, 8 INCONCLUSIVE."""
    slos = _load(path, period)
    batch = _csv(namespaces)
    if not batch:
        raise click.BadParameter("name at least one namespace, e.g. a,b", param_hint="--namespaces")
    for option, names in (("--namespaces", batch), ("--baseline", _csv(baseline))):
        # They go into PromQL label matchers: only real namespace names, nothing to inject.
        bad = [n for n in names if not is_dns1123_label(n)]
        if bad:
            raise click.BadParameter(
                f"{', '.join(map(repr, bad))}: not a namespace name (a DNS-1123 label: "
                "lowercase letters, digits and '-', at most 63)",
                param_hint=option,
            )
    parsed = urlsplit(prometheus)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise click.BadParameter(
            f"{prometheus!r} is not an http(s) URL with a host; e.g. http://127.0.0.1:9090",
            param_hint="--prometheus",
        )
    auth: PrometheusAuth | None = None
    if auth_path is not None:
        try:
            auth = load_model(auth_path, PrometheusAuth)
        except SpecError as exc:
            click.echo(f"error: --prometheus-auth {exc}", err=True)
            raise click.exceptions.Exit(int(ExitCode.USAGE)) from None
    result = asyncio.run(
        check_once(
            slos,
            prometheus,
            batch,
            _csv(baseline),
            window_seconds=_seconds("--window", window),
            short_window_seconds=_seconds("--short-window", short_window),
            revision=revision,
            auth=auth,
        )
    )
    render_result(result, Console(), show_queries=show_queries)
    raise click.exceptions.Exit(int(VERDICT_EXIT[result.verdict]))
