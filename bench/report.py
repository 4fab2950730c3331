"""Figures to tables: percentiles, the growth fit, the targets, Markdown and JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def loglog_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) over log(x): y ~ x^k returns k (1 = linear)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum(
        (a - mx) ** 2 for a in lx
    )


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else math.nan


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def _x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    out = [line, rule]
    for row in rows:
        out.append(
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        )
    return out


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Benchmark of {results['commit']} on {results['date']}: {m['cpu_model']}, "
        f"{m['nproc']} cores ({m['placement']}), Python {m['python']}, aiohttp {m['aiohttp']}, "
        f"event loop {m['schemagate_loop']}, core {m['schemagate_core']}; "
        f"load average {m['loadavg_start']} at the start, "
        f"{m['loadavg_end']} at the end.",
        "",
    ]
    header = [
        "scenario", "server", "req/s (wrk)", "xref", "rate", "p50 ms", "p99 ms",
        "CPU s/1k req", "xref", "peak RSS MiB", "xref", "failed",
    ]  # fmt: skip
    rows = []
    for s in results["scenarios"]:
        sg, ref, r = s["servers"]["schemagate"], s["servers"]["reference"], s["ratios"]
        title = f"{s['title']} ({_kib(s['body_bytes'])})"
        rows.append([
            title, "schemagate", f"{sg['rps']:,.0f}", _x(r["rps"]), f"{s['rate']:g}/s",
            _ms(sg["p50"]), _ms(sg["p99"]), f"{sg['cpu_per_1k']:.3f}", _x(r["cpu_per_1k"]),
            f"{sg['peak_rss_mib']:.1f}", _x(r["peak_rss"]), str(sg["failed"]),
        ])  # fmt: skip
        rows.append([
            "", "reference", f"{ref['rps']:,.0f}", "", "", _ms(ref["p50"]), _ms(ref["p99"]),
            f"{ref['cpu_per_1k']:.3f}", "", f"{ref['peak_rss_mib']:.1f}", "", str(ref["failed"]),
        ])  # fmt: skip
    lines += _table(header, rows)
    notes = [n for s in results["scenarios"] for n in s["notes"]]
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]

    g = results["growth"]
    lines += [
        "",
        "Growth: one connection, requests back to back; time is the server's CPU per request.",
        "",
    ]
    grows = []
    for i, size in enumerate(g["bytes"]):
        grows.append([
            g["labels"][i], f"{size:,}",
            f"{g['schemagate']['cpu_ms'][i]:.2f}", f"{g['schemagate']['p50_ms'][i]:.1f}",
            f"{g['reference']['cpu_ms'][i]:.2f}", f"{g['reference']['p50_ms'][i]:.1f}",
        ])  # fmt: skip
    grows.append([
        "exponent (all / 100 KB+)", "",
        f"{g['schemagate']['exponent']:.2f} / {g['schemagate']['exponent_large']:.2f}",
        f"{g['schemagate']['exponent_p50']:.2f}",
        f"{g['reference']['exponent']:.2f} / {g['reference']['exponent_large']:.2f}",
        f"{g['reference']['exponent_p50']:.2f}",
    ])  # fmt: skip
    lines += _table(
        ["Deployment", "body bytes", "schemagate CPU ms", "p50 ms", "reference CPU ms", "p50 ms"],
        grows,
    )

    k = results["soak"]
    lines += [
        "",
        f"Soak: {k['requests']:,} inject requests at saturation; RSS {k['rss_first_mib']:.1f} MiB "
        f"after {k['first']:,}, {k['rss_end_mib']:.1f} MiB at the end ({k['change_pct']:+.1f}%); "
        f"{k['failed']} failed.",
        "",
    ]
    f = results["footprint"]
    up, mem = f["startup"], f["memory"]
    lines += [
        f"Start-up, process start to ready, `make run`'s configuration: schemagate "
        f"{up['schemagate']['median']:.3f} s median ({up['schemagate']['max']:.3f} s slowest) "
        f"to /readyz; reference {up['reference']['median']:.3f} s to /healthz.",
        "",
        "Peak RSS per configured engine, the same inject load on each:",
        "",
    ]
    mem_rows = [["reference", "", f"{mem['reference_peak_rss_mib']:.1f}", ""]]
    for engine, e in mem["engines"].items():
        mem_rows.append([f"schemagate, {engine}", e["config"], f"{e['peak_rss_mib']:.1f}",
                         _x(e["ratio"])])  # fmt: skip
    lines += _table(["server", "config", "peak RSS MiB", "xref"], mem_rows)
    lines += [
        "",
        "Targets:",
        "",
    ]
    for t in results["targets"]:
        lines.append(f"- [{'x' if t['met'] else ' '}] {t['target']}: {t['value']}")
    return "\n".join(lines) + "\n"
