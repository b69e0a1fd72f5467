#!/usr/bin/env python3
"""Ratios of iris-init to each peer in one run of the peer benchmark.

    scripts/peer-ratios.py RESULTS_DIR   (the run's dir with raw.tsv and meta.tsv)

raw.tsv has one measurement a line: candidate, workload, metric, repetition,
value. For each workload's headline figures this prints the median of
iris-init, of each peer, and iris-init / peer (below 1: iris-init is ahead
on a time, CPU or memory figure), then the host load average when each
candidate started: compare within one run only.
"""
import statistics
import sys
from collections import defaultdict
from pathlib import Path

US = "iris-init"
# (workload, metric, what it is); lower is better for all of them.
FIGURES = [
    ("w1", "init_cpu_ms", "W1 PID 1 CPU during a 20,000-orphan storm, ms"),
    ("w1", "drain_ms", "W1 zombies left after the last fork, ms"),
    ("w2", "pid1_pss_kb", "W2 PID 1 Pss with 100 idle services, KiB"),
    ("w2", "tree_pss_kb", "W2 whole supervision tree Pss, KiB"),
    ("w2", "tree_sched_ms", "W2 supervision tree CPU in the idle window, ms"),
    ("w3", "procs_ms", "W3 all 100 services running, ms"),
    ("w3", "ports_ms", "W3 all 100 ports accept, ms"),
    ("w4", "proc_ms", "W4 new process after SIGKILL, ms"),
    ("w4", "port_ms", "W4 port accepts again after SIGKILL, ms"),
]


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__.strip())
    run = Path(argv[1])
    values = defaultdict(list)
    for row in read_tsv(run / "raw.tsv"):
        if len(row) == 5:
            cand, work, metric, _, value = row
            try:
                values[(cand, work, metric)].append(float(value))
            except ValueError:
                pass
    meta = read_tsv(run / "meta.tsv")
    cands = []
    for row in meta:
        if len(row) == 3 and row[1] == "kind" and row[0] not in cands:
            cands.append(row[0])
    peers = [c for c in cands if c != US]
    if US not in cands or not peers:
        sys.exit(f"{run}: needs {US} and at least one peer (found: {', '.join(cands) or 'none'})")

    def median(cand, work, metric):
        v = values.get((cand, work, metric))
        return statistics.median(v) if v else None

    def cell(v):
        return "-" if v is None else f"{v:,.1f}"

    head = f"| figure | {US} | " + " | ".join(f"{p} | {US} / {p}" for p in peers) + " |"
    print(f"## iris-init against its peers ({run.name}, medians)\n")
    print(head)
    print("|" + "---|" * (2 + 2 * len(peers)))
    for work, metric, what in FIGURES:
        ours = median(US, work, metric)
        if ours is None and all(median(p, work, metric) is None for p in peers):
            continue  # a workload this run left out
        cells = [what, cell(ours)]
        for p in peers:
            theirs = median(p, work, metric)
            ratio = f"{ours / theirs:.2f}" if ours is not None and theirs else "-"
            cells += [cell(theirs), ratio]
        print("| " + " | ".join(cells) + " |")
    loads = [f"{r[0]} {r[2]}" for r in meta if len(r) == 3 and r[1] == "loadavg"]
    print("\nLoad average (1/5/15 min) when each candidate started: " + "; ".join(loads))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
