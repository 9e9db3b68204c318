"""Markdown output of scripts/bench-http and its section of docs/BENCHMARKS.md."""

import math
import statistics

import report

HEADING = "## DICOMweb (HTTP) (`scripts/bench-http`)"
GOAL = 0.5  # radhub latency ≤ 0.5× Orthanc's


def percentile(values, q):
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def _ms(secs):
    if secs is None:
        return "—"
    ms = secs * 1000.0
    if ms >= 100:
        return f"{ms:,.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def _bytes(n):
    if n is None:
        return "—"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.0f} kB"
    return f"{n:.0f} B"


def _ratio(mine, theirs):
    if mine is None or theirs is None or theirs <= 0:
        return "n/a"
    r = mine / theirs
    text = f"{r:.2f}" if r >= 0.095 else f"{r:.1g}"
    return f"{text}× ({'met' if r <= GOAL else 'not met'})"


def _why(result):
    why = result.get("skipped") or f"FAILED: {result.get('error')}"
    why = why.replace("|", "\\|").replace("\n", " ")
    return why if len(why) <= 120 else why[:117] + "..."


def _ok(result):
    return result is not None and not result.get("error") and not result.get("skipped") and result.get("times")


def _matches(values):
    if not values:
        return "—"
    lo, hi = min(values), max(values)
    if lo == hi:
        return f"{lo:,}"
    return f"{lo:,}–{hi:,} (median {statistics.median(values):,.0f})"


def latency_table(ctx, results):
    servers = ctx["servers"]  # [(key, label)]
    head = "| request | matches | " + " | ".join(f"{label} p50 | {label} p99" for _k, label in servers)
    lines = []
    both = len(servers) == 2 and servers[0][0] == "radhub"
    if both:
        head += " | radhub ÷ Orthanc p50 | radhub ÷ Orthanc p99"
    lines.append(head + " |")
    lines.append("|---|---:|" + "---:|---:|" * len(servers) + ("---:|---:|" if both else ""))
    for kind, label in ctx["kinds"]:
        cells = []
        stats = {}
        for key, _label in servers:
            r = results.get((key, kind))
            if _ok(r):
                stats[key] = (percentile(r["times"], 0.5), percentile(r["times"], 0.99))
                cells += [_ms(stats[key][0]), _ms(stats[key][1])]
            else:
                cells += [_why(r or {"error": "not run"}), ""]
        row = f"| {label} | {_matches(ctx['matches'].get(kind))} | " + " | ".join(cells)
        if both:
            mine, theirs = stats.get("radhub"), stats.get(servers[1][0])
            if mine and theirs:
                row += f" | {_ratio(mine[0], theirs[0])} | {_ratio(mine[1], theirs[1])}"
            else:
                row += " | n/a | n/a"
        lines.append(row + " |")
    # First WADO-RS request after each server started.
    cells = []
    firsts = {}
    for key, _label in servers:
        first = ctx["first"].get(key)
        firsts[key] = first
        cells += [_ms(first), "—"]
    row = (f"| {ctx['first_label']} | {ctx['series_count']:,} | " + " | ".join(cells))
    if both:
        row += f" | {_ratio(firsts.get('radhub'), firsts.get(servers[1][0]))} | —"
    lines.append(row + " |")
    return lines


def detail_table(ctx, results):
    servers = ctx["servers"]
    lines = ["| request | " + " | ".join(f"{label} answer | {label} server CPU per request"
                                          for _k, label in servers) + " |",
             "|---|" + "---:|---:|" * len(servers)]
    for kind, label in ctx["kinds"]:
        cells = []
        for key, _label in servers:
            r = results.get((key, kind))
            if _ok(r):
                cpu = r["cpu"] / r["cpu_requests"] if r.get("cpu_requests") else None
                cells += [_bytes(statistics.median(r["bytes"])), _ms(cpu)]
            else:
                cells += ["—", "—"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def markdown(ctx, results):
    out = [HEADING, ""]
    out.append(ctx["intro"])
    out.append("")
    out += latency_table(ctx, results)
    out.append("")
    out.append(f"Goal (the issue's): radhub's latency ≤ {GOAL:g}× Orthanc's.")
    out.append("")
    out.append("Answer size (median, uncompressed) and CPU time of the server's processes per request:")
    out.append("")
    out += detail_table(ctx, results)
    out.append("")
    out += [f"- {note}" for note in ctx["notes"]]
    out.append("")
    out.append("Reproduce: `scripts/bench-http` (add `--write-docs` to replace this section).")
    return "\n".join(out) + "\n"


def write_docs(path, section):
    report.write_docs(path, section, heading=HEADING)
