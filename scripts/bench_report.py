"""Turns the benchmark harness's JSON results into docs/benchmarks.md and a plot.

Usage: bench_report.py --out docs/benchmarks.md --plot docs/benchmarks.png RESULT.json...
Each RESULT.json is what ../shared/bench/peers.py --json wrote; files of the same data set
(the "-once" run beside the main one) are shown in one table.
"""
import argparse
import json
import os

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--plot", required=True)
ap.add_argument("results", nargs="+")
a = ap.parse_args()

by_dataset = {}
machine = settings = None
for path in a.results:
    doc = json.load(open(path))
    machine = machine or doc["machine"]
    settings = settings or doc["settings"]
    name = os.path.basename(path).removesuffix(".json").removesuffix("-once").removesuffix("-concat")
    entry = by_dataset.setdefault(name, {"dataset": doc["dataset"], "rows": [], "date": doc["date"]})
    for s in doc["summary"]:
        if s["peer"] == "ours":
            s["peer"] = doc["settings"].get("ours_name") or "ours"
        if not any(r["peer"] == s["peer"] for r in entry["rows"]):
            entry["rows"].append(s)


def find(rows, peer):
    return next((r for r in rows if r["peer"] == peer), None)


lines = ["# Benchmarks", "",
         "compactor beside its peers on the same machine and data, measured by the harness in",
         "`../shared/bench` (`peers.py`; every peer pinned to zstd level 3, 128 MiB target,",
         "262,144-row row groups where it takes that setting). Reproduce with `scripts/bench`.",
         "`compactor merge` is the engine on a directory; `compactor once (in place)` is the",
         "scheduled path (plan, policy plugin, merge, verify, delete) rewriting a warehouse.", ""]
lines.append(f"Machine: {machine.get('cores')} cores, {machine.get('mem_gib')} GiB, "
             f"{machine.get('platform')}, Python {machine.get('python')}; the command: `scripts/bench`.")
lines.append("")
for name, entry in by_dataset.items():
    rows = entry["rows"]
    ds = entry["dataset"]
    # What each tool merged: every partition, or (scope partition) the first alone.
    first = rows[0]
    parts = first["partitions"]
    whole = parts == ds.get("generator", {}).get("partitions")
    row_count = f", {ds.get('total_rows', 0):,} rows" if whole else ""
    lines.append(f"## {name}: {first['in_files']} files, {first['in_mib']:.0f} MiB{row_count} "
                 f"in {parts} partition{'' if parts == 1 else 's'} (run {entry['date']})")
    lines.append("")
    # CPU seconds (user and system, the tool's own processes) tell the work done apart from
    # how well it kept the cores busy. On a shared machine they move from run to run too.
    lines.append("| tool | wall s (median) | CPU s (median) | MiB/s | peak RSS MiB | output MiB | files | rows ok |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ok = {True: "yes", False: "NO", None: "n/a"}[r.get("rows_ok")]
        cpu = f"{r['cpu_s_median']:.2f}" if r.get("cpu_s_median") is not None else "-"
        lines.append(f"| {r['peer']} | {r['wall_s_median']:.2f} | {cpu} | {r['mib_per_s']:.0f} | "
                     f"{r['peak_rss_mib_max']:.0f} | {r['out_mib']:.1f} | {r['out_files']} | {ok} |")
    ours = find(rows, "compactor")
    if ours:
        lines.append("")
        lines.append("Ratios of `compactor merge` (throughput: higher is better; CPU time, memory and output: lower is better):")
        lines.append("")
        lines.append("| against | throughput | CPU time | peak RSS | output bytes |")
        lines.append("|---|---:|---:|---:|---:|")
        for r in rows:
            # The cat and cp floors write no Parquet: a ratio against them says nothing.
            if r is ours or r["peer"].startswith("compactor") or r["peer"] in ("cat", "cp"):
                continue
            out = f"{ours['out_mib'] / r['out_mib']:.2f}x" if r["out_mib"] else "-"
            cpu = (f"{ours['cpu_s_median'] / r['cpu_s_median']:.2f}x"
                   if ours.get("cpu_s_median") and r.get("cpu_s_median") else "-")
            lines.append(f"| {r['peer']} | {ours['mib_per_s'] / r['mib_per_s']:.2f}x | {cpu} | "
                         f"{ours['peak_rss_mib_max'] / r['peak_rss_mib_max']:.2f}x | {out} |")
    concat, cat = find(rows, "compactor merge --mode concat"), find(rows, "cat")
    if concat and cat:
        lines.append("")
        lines.append(f"`compactor merge --mode concat` (column chunks copied, nothing decoded) runs at "
                     f"{concat['mib_per_s'] / cat['mib_per_s']:.0%} of `cat`'s throughput.")
    lines.append("")

notes = os.path.join(os.path.dirname(a.out), "benchmarks-notes.md")
if os.path.exists(notes):
    lines.append(open(notes).read().rstrip())
    lines.append("")
lines.append("![throughput and peak memory per tool](benchmarks.png)")
open(a.out, "w").write("\n".join(lines) + "\n")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

fig, axes = plt.subplots(len(by_dataset), 2, figsize=(12, 3.5 * len(by_dataset)), squeeze=False)
for row, (name, entry) in enumerate(by_dataset.items()):
    # The floors write no Parquet, and concat (no decoding) would dwarf every other bar.
    rows = [r for r in entry["rows"] if r["peer"] not in ("cat", "cp") and "concat" not in r["peer"]]
    peers = [r["peer"].replace(" (in place)", "\n(in place)") for r in rows]
    colors = ["tab:orange" if p.startswith("compactor") else "tab:blue" for p in peers]
    axes[row][0].barh(peers, [r["mib_per_s"] for r in rows], color=colors)
    axes[row][0].set_title(f"{name}: throughput, MiB/s (higher is better)")
    axes[row][1].barh(peers, [r["peak_rss_mib_max"] for r in rows], color=colors)
    axes[row][1].set_title(f"{name}: peak RSS, MiB (lower is better)")
    for ax in axes[row]:
        ax.invert_yaxis()
fig.tight_layout()
fig.savefig(a.plot, dpi=90)
