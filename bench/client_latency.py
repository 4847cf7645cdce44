#!/usr/bin/env python3
"""Log latency of run-render, from the job's print to the client's print.

Reads the client's stdout on stdin (run-render without --json prints each log line there as
`HH:MM:SS │ <line>`). The job prints lines `LAT <epoch seconds>` (Octave:
`printf('LAT %.3f\\n', time()); fflush(stdout)`); each such line is timestamped here the moment
it arrives, and latency = arrival - printed. Both ends run on this machine, on the same clock.

    run-render ... --command "..." | bench/client_latency.py [--expect N] [--raw FILE]

Prints one summary line (`latency: lines=... p50=... p95=... max=...`, seconds) on stdout;
exits 1 when no LAT line arrived. Percentiles are nearest-rank.
"""

import argparse
import math
import re
import sys
import time

LAT = re.compile(rb"\bLAT (\d+(?:\.\d+)?)")


def rank(sorted_values, q):
    """Nearest-rank percentile of an already sorted list."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--expect", type=int, help="how many LAT lines the job prints")
    p.add_argument("--raw", help="write 'printed arrival latency' per line to this file")
    p.add_argument("--echo", action="store_true", help="copy every input line to stderr")
    args = p.parse_args()

    rows = []
    other = 0
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()  # returns as soon as a whole line is in the pipe
        if not line:
            break
        arrived = time.time()
        if args.echo:
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
        m = LAT.search(line)
        if m:
            printed = float(m.group(1))
            rows.append((printed, arrived, arrived - printed))
        else:
            other += 1

    if args.raw:
        with open(args.raw, "w", encoding="ascii") as f:
            for printed, arrived, lat in rows:
                f.write(f"{printed:.3f} {arrived:.3f} {lat:.3f}\n")

    if not rows:
        print(f"latency: no LAT line arrived ({other} other lines)")
        return 1
    lats = sorted(r[2] for r in rows)
    # Arrivals come in bursts (one per log chunk the client fetched): count them.
    bursts = 1 + sum(1 for a, b in zip(rows, rows[1:]) if b[1] - a[1] > 0.05)
    expect = f"/{args.expect}" if args.expect else ""
    print(
        f"latency: lines={len(rows)}{expect} bursts={bursts} "
        f"min={lats[0]:.3f} p50={rank(lats, 0.50):.3f} mean={sum(lats) / len(lats):.3f} "
        f"p95={rank(lats, 0.95):.3f} max={lats[-1]:.3f} (seconds, printed -> shown)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
