"""Markdown output of scripts/bench-ingest and its section of docs/BENCHMARKS.md."""

import os
import statistics

HEADING = "## DICOM ingest (`scripts/bench-ingest`)"
# radhub instances/s ÷ theirs, per association count (one, four).
GOALS = (("orthanc", "Orthanc", (3.0, 3.0)), ("storescp", "storescp", (0.6, 0.8)))
RSS_GOAL_MIB = 200


def _fmt_rate(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _median(values):
    return statistics.median(values) if values else None


def summarize(result, count, total_bytes):
    """(instances/s, MB/s, seconds, CPU ms per instance) from the median run, or None."""
    if result.get("error") or result.get("skipped") or not result.get("times"):
        return None
    secs = _median(result["times"])
    cpu = _median(result["cpu"])
    return {"secs": secs, "ips": count / secs, "mbps": total_bytes / 1e6 / secs,
            "cpu_ms": cpu * 1000.0 / count, "ips_min": count / max(result["times"]),
            "ips_max": count / min(result["times"]), "runs": len(result["times"]),
            "rss_mib": max(result["rss"]) / 1024 if result.get("rss") else None}


def results_table(receivers, parallel, results, count, total_bytes):
    lines = ["| receiver | associations | time | instances/s | MB/s | server CPU per instance | peak RSS |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for key, label in receivers:
        for n in parallel:
            r = results[(key, n)]
            s = summarize(r, count, total_bytes)
            if s is not None:
                ips = _fmt_rate(s["ips"])
                if s["runs"] > 1:
                    ips += f" ({_fmt_rate(s['ips_min'])}–{_fmt_rate(s['ips_max'])})"
                rss = f"{s['rss_mib']:,.0f} MiB" if s["rss_mib"] is not None else "n/a"
                lines.append(f"| {label} | {n} | {s['secs']:.2f} s | {ips} | "
                             f"{s['mbps']:,.0f} | {s['cpu_ms']:.1f} ms | {rss} |")
            else:
                why = r.get("skipped") or f"FAILED: {r.get('error')}"
                why = why.replace("|", "\\|").replace("\n", " ")
                if len(why) > 120:
                    why = why[:117] + "..."
                lines.append(f"| {label} | {n} | — | {why} | | | |")
    return lines


def ratio_table(parallel, results, count, total_bytes):
    head = "| radhub instances/s ÷ | " + " | ".join(
        f"{n} association{'s' if n > 1 else ''}" for n in parallel) + " | goal |"
    lines = [head, "|---|" + "---:|" * len(parallel) + "---|"]
    for key, name, goals in GOALS:
        cells = []
        for n, goal in zip(parallel, goals):
            mine = summarize(results.get(("radhub", n), {}), count, total_bytes)
            theirs = summarize(results.get((key, n), {}), count, total_bytes)
            if mine is None or theirs is None:
                cells.append("n/a")
            else:
                ratio = mine["ips"] / theirs["ips"]
                cells.append(f"{ratio:.2f}× ({'met' if ratio >= goal else 'not met'})")
        lines.append(f"| {name} | " + " | ".join(cells) + " | " + " / ".join(f"≥ {g:g}×" for g in goals) + " |")
    return lines


def markdown(ctx, results):
    count, total_bytes = ctx["count"], ctx["total_bytes"]
    out = [HEADING, ""]
    out.append(f"{count:,} CT instances (512×512, 16-bit, explicit VR little endian, "
               f"{total_bytes / 1e6:,.0f} MB in all; MB = 10⁶ bytes) sent with DCMTK `storescu` "
               f"to three receivers on the same machine in one run ({ctx['date']}), over one "
               f"association and over {ctx['parallel'][-1]} at once.")
    if ctx["runs"] > 1:
        out[-1] += (f" Each figure is the median of {ctx['runs']} runs, the receivers taking turns; "
                    "the range of instances/s is in brackets.")
    out.append("")
    out += results_table(ctx["receivers"], ctx["parallel"], results, count, total_bytes)
    out.append("")
    out.append("Goals (issue 18's): radhub durable ≥ 3× Orthanc; ≥ 0.6× storescp over one association "
               f"and ≥ 0.8× over {ctx['parallel'][-1]}; radhub's peak RSS during the "
               f"{ctx['parallel'][-1]}-association run ≤ {RSS_GOAL_MIB} MiB.")
    out.append("")
    out += ratio_table(ctx["parallel"], results, count, total_bytes)
    out.append("")
    out += [f"- {note}" for note in ctx["notes"]]
    out.append("")
    out.append("Reproduce: `scripts/bench-ingest` (add `--write-docs` to replace this section).")
    return "\n".join(out) + "\n"


def write_docs(path, section, heading=HEADING):
    """Replaces the section under heading in path, or appends it; the rest is left as it is."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == heading), None)
    new = section.splitlines(keepends=True)
    if start is None:
        text = "".join(lines)
        if text and not text.endswith("\n"):
            text += "\n"
        if text:
            text += "\n"
        text += section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = lines[end:]
        if tail:
            new.append("\n")
        text = "".join(lines[:start] + new + tail)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
