"""Tiny inline-SVG charts (line, bar, heatmap): the report must open offline, with no JS or CDN."""
from __future__ import annotations

import html
from typing import Dict, List, Sequence, Tuple

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#637939"]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def line_chart(series: Dict[str, List[Tuple[float, float]]], title: str, width: int = 560, height: int = 260,
               ylabel: str = "") -> str:
    """One polyline per series of (x, y) points, shared axes, a legend."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return f"<p>{html.escape(title)}: no data</p>"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    left, right, top, bottom = 50, 130, 24, 30
    w, h = width - left - right, height - top - bottom
    sx = lambda x: left + (x - x0) / (x1 - x0) * w  # noqa: E731
    sy = lambda y: top + h - (y - y0) / (y1 - y0) * h  # noqa: E731
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="{html.escape(title)}">',
           f'<text x="{left}" y="15" font-size="13" font-weight="bold">{html.escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for frac in (0, 0.5, 1):
        y = y0 + frac * (y1 - y0)
        out.append(f'<text x="{left - 4}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end">{_fmt(y)}</text>')
        x = x0 + frac * (x1 - x0)
        out.append(f'<text x="{sx(x):.1f}" y="{top + h + 14}" font-size="10" text-anchor="middle">{_fmt(x)}</text>')
    if ylabel:
        out.append(f'<text x="12" y="{top + h / 2}" font-size="10" transform="rotate(-90 12 {top + h / 2})">'
                   f'{html.escape(ylabel)}</text>')
    for i, (name, s) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        if len(s) == 1:
            out.append(f'<circle cx="{sx(s[0][0]):.1f}" cy="{sy(s[0][1]):.1f}" r="3" fill="{color}"/>')
        ly = top + 12 + 14 * i
        out.append(f'<rect x="{left + w + 8}" y="{ly - 8}" width="10" height="3" fill="{color}"/>'
                   f'<text x="{left + w + 22}" y="{ly - 3}" font-size="10">{html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(values: Dict[str, float], title: str, width: int = 560, bar_h: int = 18) -> str:
    if not values:
        return f"<p>{html.escape(title)}: no data</p>"
    top, left = 24, 130
    height = top + bar_h * len(values) + 10
    vmax = max(max(values.values()), 1e-9)
    w = width - left - 60
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{html.escape(title)}"><text x="{left}" y="15" font-size="13" font-weight="bold">'
           f'{html.escape(title)}</text>']
    for i, (name, v) in enumerate(values.items()):
        y = top + i * bar_h
        out.append(f'<text x="{left - 6}" y="{y + bar_h - 6}" font-size="11" '
                   f'text-anchor="end">{html.escape(name)}</text>'
                   f'<rect x="{left}" y="{y + 2}" width="{max(v, 0) / vmax * w:.1f}" height="{bar_h - 4}" '
                   f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{left + max(v, 0) / vmax * w + 4:.1f}" '
                   f'y="{y + bar_h - 6}" font-size="11">{v:.2f}</text>')
    out.append("</svg>")
    return "".join(out)


def heatmap(matrix: Sequence[Sequence[float]], labels: List[str], title: str, cell: int = 34) -> str:
    """Row-normalised confusion matrix (rows: ground truth, columns: prediction)."""
    n = len(labels)
    left, top = 110, 110
    size = left + n * cell + 10
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{size}" height="{top + n * cell + 10}" '
           f'role="img" aria-label="{html.escape(title)}"><text x="4" y="15" font-size="13" font-weight="bold">'
           f'{html.escape(title)}</text>']
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        out.append(f'<text x="{left - 4}" y="{top + i * cell + cell / 2 + 4}" font-size="10" text-anchor="end">'
                   f'{html.escape(labels[i])}</text>')
        for j, v in enumerate(row):
            frac = v / total
            shade = int(255 * (1 - frac))
            out.append(f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell}" height="{cell}" '
                       f'fill="rgb({shade},{shade},255)" stroke="#fff"/><text x="{left + j * cell + cell / 2}" '
                       f'y="{top + i * cell + cell / 2 + 4}" font-size="9" text-anchor="middle" '
                       f'fill="{"#fff" if frac > 0.5 else "#000"}">{100 * frac:.0f}</text>')
    for j, name in enumerate(labels):
        x = left + j * cell + cell / 2
        out.append(f'<text x="{x}" y="{top - 6}" font-size="10" transform="rotate(-60 {x} {top - 6})">'
                   f'{html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)
