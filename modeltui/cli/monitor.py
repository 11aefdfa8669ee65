"""Monitoring commands of the CLI: ``metrics NAME [--window 1h] [--json]``."""

from __future__ import annotations

import re

import click

from daemon.protocol import requests as q
from daemon.protocol import results as r

from .. import format as fmt
from . import render
from .common import emit, json_option, main, out, run

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_WINDOW = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_window(text: str) -> int:
    """``30s``, ``15m``, ``1h``, ``2d`` (a bare number is seconds) → seconds."""
    m = _WINDOW.match(text.lower())
    if m is None:
        raise click.BadParameter(f"{text[:40]!r}: use a number with s, m, h or d (30s, 15m, 1h, 2d)")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def _window(ctx: click.Context, param: click.Parameter, value: str) -> int:
    return parse_window(value)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def show_metrics(m: r.DeploymentMetrics) -> None:
    up = "unknown" if m.up is None else ("up" if m.up else f"DOWN ({m.scrape_error})" if m.scrape_error else "DOWN")
    scraped = f"{fmt.when(m.last_scrape)} UTC" if m.last_scrape else "never"
    lines = [  # each under 80 columns with a 40-character deployment name
        f"{m.deployment}  window {fmt.window(m.window_seconds)}",
        f"target        {up}  last scrape {scraped}",
        f"requests      {m.requests:.0f}  ({m.request_rate:.3f}/s)",
        f"errors        5xx {fmt.pct(m.error_rate)}  4xx {fmt.pct(m.client_error_rate)}",
        f"latency       p50 {fmt.ms(m.latency_p50_seconds)}  p95 {fmt.ms(m.latency_p95_seconds)}  "
        f"p99 {fmt.ms(m.latency_p99_seconds)}",
        f"feedback      {m.labelled:.0f} labelled  accuracy {_num(m.accuracy)}  f1 {_num(m.f1)} (macro)",
        f"              precision {_num(m.precision)}  recall {_num(m.recall)} (macro)",
    ]
    for cls, s in sorted(m.per_class.items()):
        lines.append(
            f"  class {cls:<12} precision {s.precision:.3f}  recall {s.recall:.3f}  f1 {s.f1:.3f}  "
            f"support {s.support:.0f}"
        )
    if m.drift:
        lines += drift_lines(m.drift)
    for line in lines:
        out.print(render.plain(line))


def drift_lines(drift: dict[str, r.FeatureDrift]) -> list[str]:
    """Each judged feature's PSI and KS (SHIFTED flagged); the features with too few observations for any
    verdict in one line, with how many there are and how many it takes."""
    lines = ["drift"]
    waiting = fmt.drift_waiting(drift)
    if waiting:
        lines.append(f"  {waiting}")
    for feature, d in sorted(drift.items()):
        if d.state != "not_enough_data":
            flag = "  SHIFTED" if d.state == "shifted" else ""
            lines.append(f"  {feature:<20} psi {d.psi:.3f}  ks {d.ks:.3f}  n {d.count:.0f}{flag}")
    return lines


@main.command()
@click.argument("name")
@click.option("--window", default="1h", show_default=True, callback=_window, help="30s, 15m, 1h, 2d, … (60 s to 30 d)")
@json_option
@click.pass_context
def metrics(ctx: click.Context, name: str, window: int, as_json: bool) -> None:
    """Request rate, errors, latency percentiles, accuracy/precision/recall/F1 and drift of deployment NAME."""
    request = q.MetricsRequest(name=name, window_seconds=window)
    result = run(ctx, lambda c: c.call(request))
    emit(result, as_json, lambda: show_metrics(result))
