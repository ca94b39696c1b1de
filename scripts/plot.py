#!/usr/bin/env python3
"""Plots sluice-bench results as SVG, with the standard library only.

    python3 scripts/plot.py            # reads bench-results/*.jsonl, writes bench-results/*.svg

Each line of a bench-results/*.jsonl file is {"label", "args", "result"},
written by scripts/bench.sh; "result" is sluice-bench's JSON line.
"""

import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench-results")
OUT = RESULTS

W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 40, 56
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def load(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def nice_ticks(lo, hi, n=5):
    span = hi - lo
    if span <= 0:
        return [lo]
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 2.5, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    t = math.floor(lo / step) * step
    out = []
    while t <= hi + step * 1e-9:
        out.append(round(t, 10))
        t += step
    return out


def fmt(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def chart(title, xlabel, ylabel, series, hlines=(), ymax=None):
    """series: [(name, [(x, y)…])]; hlines: [(y, label)]."""
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts] + [y for y, _ in hlines]
    x0, x1 = 0, max(xs) * 1.05
    y0, y1 = 0, (ymax or max(ys) * 1.15)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x):
        return LEFT + (x - x0) / (x1 - x0) * pw

    def py(y):
        return TOP + ph - (min(y, y1) - y0) / (y1 - y0) * ph

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>']
    for t in nice_ticks(x0, x1):
        s.append(f'<line x1="{px(t):.1f}" y1="{TOP}" x2="{px(t):.1f}" y2="{TOP + ph}" stroke="#eee"/>')
        s.append(f'<text x="{px(t):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{fmt(t)}</text>')
    for t in nice_ticks(y0, y1):
        s.append(f'<line x1="{LEFT}" y1="{py(t):.1f}" x2="{LEFT + pw}" y2="{py(t):.1f}" stroke="#eee"/>')
        s.append(f'<text x="{LEFT - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    s.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    s.append(f'<text x="{LEFT + pw / 2}" y="{H - 14}" text-anchor="middle">{xlabel}</text>')
    s.append(f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" '
             f'transform="rotate(-90 16 {TOP + ph / 2})">{ylabel}</text>')
    for y, label in hlines:
        s.append(f'<line x1="{LEFT}" y1="{py(y):.1f}" x2="{LEFT + pw}" y2="{py(y):.1f}" '
                 f'stroke="#888" stroke-dasharray="6 4"/>')
        s.append(f'<text x="{LEFT + pw - 4}" y="{py(y) - 5:.1f}" text-anchor="end" fill="#555">{label}</text>')
    for i, (name, pts) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        pts = sorted(pts)
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        s.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for x, y in pts:
            s.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{c}"/>')
        s.append(f'<rect x="{LEFT + 12}" y="{TOP + 10 + 18 * i}" width="14" height="4" fill="{c}"/>')
        s.append(f'<text x="{LEFT + 32}" y="{TOP + 16 + 18 * i}">{name}</text>')
    s.append("</svg>")
    return "\n".join(s) + "\n"


def write(name, svg):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "w") as f:
        f.write(svg)
    print("wrote", os.path.relpath(os.path.join(OUT, name), ROOT))


def main():
    idle = load("idle.jsonl")
    if idle:
        rss = [(r["result"]["streams_opened"], r["result"]["server_rss_per_stream_b"]) for r in idle]
        # sockstat is machine-wide and moves with other sockets' buffers:
        # a negative growth is drawn as 0.
        kern = [(r["result"]["streams_opened"], max(0, r["result"]["kernel_tcp_mem_per_stream_b"])) for r in idle
                if r["result"]["kernel_tcp_mem_after_kb"] >= 0]
        write("memory-per-stream.svg", chart(
            "Memory per idle stream (memory broker, server on one core)",
            "open streams", "bytes per stream",
            [("server RSS growth / stream", rss), ("kernel TCP buffer memory / stream (sockstat, both ends)", kern)],
            hlines=[(4096, "target 4 KiB (RSS)")]))
    sweep = load("sweep.jsonl") + [r for r in load("fanout.jsonl") if r["label"].startswith("fanout-1000x")]
    fan10k = [r for r in load("fanout.jsonl") if r["label"].startswith("fanout-10000x")]
    if sweep:
        ser = [("1,000 subscribers, rising event rate",
                [(r["result"]["deliveries_per_s"], r["result"]["latency_p99_us"] / 1000) for r in sweep])]
        if fan10k:
            ser.append(("10,000 subscribers",
                        [(r["result"]["deliveries_per_s"], r["result"]["latency_p99_us"] / 1000) for r in fan10k]))
            # The same runs counting the warm-up's events too (sluice-bench
            # --warmup; older results have no latency_all_p99_us).
            ser.append(("10,000 subscribers, warm-up included",
                        [(r["result"]["deliveries_per_s"],
                          r["result"].get("latency_all_p99_us", r["result"]["latency_p99_us"]) / 1000)
                         for r in fan10k]))
        warm = max(r["result"].get("warmup_s", 0) for r in sweep + fan10k)
        after = f" (after a {warm:g} s warm-up)" if warm else ""
        write("p99-vs-rate.svg", chart(
            f"publish→receive p99{after} against deliveries/s, server on one core",
            "deliveries per second", "p99 latency (ms)", ser,
            hlines=[(100, "100 ms"), (50, "50 ms")]))
    if not idle and not sweep:
        print("no results in", RESULTS, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
