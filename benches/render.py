#!/usr/bin/env python3
"""Renders the benchmarks' JSON results into SVG charts for benches/README.md.

Usage: python3 benches/render.py [RESULTS_DIR] [CHARTS_DIR]
(defaults: $CARGO_TARGET_DIR/rrocker-bench or target/rrocker-bench, and benches/charts).
Standard library only: the SVG is written by hand.
"""

import json
import os
import sys
from pathlib import Path

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def svg(width, height, body):
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">\n'
        f'<rect width="{width}" height="{height}" fill="white"/>\n{body}</svg>\n'
    )


def latency_cdf(result):
    """Latency CDF of rrocker (start to final status) against crun, runc and fork+exec."""
    samples = result.get("samples_us", {})
    series = [
        ("rrocker start to final status", samples.get("start_to_final_status")),
        ("rrocker, no cgroups", samples.get("start_to_final_status_no_cgroups")),
        ("crun run", samples.get("crun")),
        ("runc run", samples.get("runc")),
        ("fork+exec", samples.get("fork_exec")),
    ]
    series = [(name, sorted(values)) for name, values in series if values]
    width, height, left, bottom, top, right = 720, 420, 60, 50, 30, 200
    # The x axis spans up to the largest p99, so one outlier does not squash the rest.
    x_max = max(values[int(len(values) * 0.99) - 1] for _, values in series) / 1000 * 1.1
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(ms):
        return left + min(ms / x_max, 1.0) * plot_w

    def y(fraction):
        return top + (1 - fraction) * plot_h

    body = [f'<text x="{left}" y="18" font-size="14">Start latency of /bin/true, CDF (ms)</text>']
    body.append(f'<line x1="{left}" y1="{y(0)}" x2="{left + plot_w}" y2="{y(0)}" stroke="black"/>')
    body.append(f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{y(1)}" stroke="black"/>')
    for step in range(6):
        ms = x_max * step / 5
        body.append(f'<text x="{x(ms)}" y="{y(0) + 16}" text-anchor="middle">{ms:.0f}</text>')
    for fraction in (0, 0.5, 0.9, 1.0):
        body.append(f'<text x="{left - 6}" y="{y(fraction) + 4}" text-anchor="end">{fraction}</text>')
        body.append(
            f'<line x1="{left}" y1="{y(fraction)}" x2="{left + plot_w}" y2="{y(fraction)}" '
            f'stroke="#ddd"/>'
        )
    for index, (name, values) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(
            f"{x(value / 1000):.1f},{y((rank + 1) / len(values)):.1f}"
            for rank, value in enumerate(values)
        )
        body.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        legend_y = top + 20 * index + 10
        body.append(f'<rect x="{left + plot_w + 15}" y="{legend_y - 9}" width="12" height="12" fill="{colour}"/>')
        body.append(f'<text x="{left + plot_w + 32}" y="{legend_y + 1}">{name}</text>')
    return svg(width, height, "\n".join(body) + "\n")


def throughput_bars(result):
    """Throughput bars against the plain-pipe baseline."""
    bars = [
        ("plain pipe", result["plain_pipe_gbps"]),
        ("plain pipe, 1 MiB", result["plain_pipe_1mib_gbps"]),
        ("rrocker, 1 client", result["one_client_gbps"]),
        (f"rrocker, {result['clients']} clients (sum)", result["clients_aggregate_gbps"]),
        ("rrocker, slowest of them", result["clients_slowest_gbps"]),
        ("rrocker, late replay", result["late_replay_gbps"]),
    ]
    width, left, bar_h, gap, top = 720, 210, 24, 10, 40
    height = top + len(bars) * (bar_h + gap) + 20
    most = max(value for _, value in bars) * 1.15
    body = [
        f'<text x="10" y="22" font-size="14">Output throughput, {result["bytes"] >> 20} MiB '
        f'(GB/s, and the ratio to the plain pipe)</text>'
    ]
    for index, (name, value) in enumerate(bars):
        top_y = top + index * (bar_h + gap)
        length = value / most * (width - left - 80)
        colour = "#7f7f7f" if name.startswith("plain") else COLOURS[0]
        ratio = value / result["plain_pipe_gbps"]
        body.append(f'<text x="{left - 8}" y="{top_y + 16}" text-anchor="end">{name}</text>')
        body.append(f'<rect x="{left}" y="{top_y}" width="{length:.1f}" height="{bar_h}" fill="{colour}"/>')
        body.append(f'<text x="{left + length + 6:.1f}" y="{top_y + 16}">{value:.2f} ({ratio:.2f}x)</text>')
    return svg(width, height, "\n".join(body) + "\n")


def main():
    target = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    results = Path(sys.argv[1]) if len(sys.argv) > 1 else target / "rrocker-bench"
    charts = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    renderers = {
        "start_latency": ("start_latency.svg", latency_cdf),
        "stream_throughput": ("stream_throughput.svg", throughput_bars),
    }
    for name, (file_name, render) in renderers.items():
        path = results / f"{name}.json"
        if not path.exists():
            print(f"no {path}: skipped")
            continue
        (charts / file_name).write_text(render(json.loads(path.read_text())))
        print(f"wrote {charts / file_name}")


if __name__ == "__main__":
    main()
