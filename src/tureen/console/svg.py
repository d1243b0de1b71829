"""Charts drawn on the server as SVG: no chart library, nothing to download.

Every chart is readable without colour: series differ by dash pattern and marker shape as
well as colour, and carry text labels; cells print their numbers; states are words. Every
string that reaches the SVG is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

# colour, dash pattern, marker: a series is told apart by any one of the three
STYLES = [("#1f5fa8", "", "circle"), ("#b3541e", "6 3", "square"),
          ("#2e7d32", "2 2", "triangle"), ("#6a3d9a", "8 3 2 3", "diamond")]


def _marker(kind: str, x: float, y: float, color: str) -> str:
    if kind == "square":
        return f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" fill="{color}"/>'
    if kind == "triangle":
        return (f'<polygon points="{x:.1f},{y - 4:.1f} {x - 4:.1f},{y + 3:.1f} '
                f'{x + 4:.1f},{y + 3:.1f}" fill="{color}"/>')
    if kind == "diamond":
        return (f'<polygon points="{x:.1f},{y - 4:.1f} {x + 4:.1f},{y:.1f} {x:.1f},{y + 4:.1f} '
                f'{x - 4:.1f},{y:.1f}" fill="{color}"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>'


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    for step in (1, 2, 2.5, 5, 10):
        mag = 10 ** len(str(int(v))) / 10
        if v <= step * mag:
            return float(step * mag)
    return v


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], title: str, y_label: str,
               width: int = 520, height: int = 200) -> Markup:
    """One line per series (x: seconds, shown relative to the newest point)."""
    left, right, top, bottom = 52, 110, 24, 30
    pw, ph = width - left - right, height - top - bottom
    pts = [p for s in series.values() for p in s]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{left}" y="14" class="chart-title">{escape(title)}</text>']
    if not pts:
        parts.append(f'<text x="{left + 10}" y="{top + ph / 2:.0f}">no data yet: it appears '
                     'while requests are served</text></svg>')
        return Markup("".join(parts))
    x1 = max(p[0] for p in pts)
    x0 = min(p[0] for p in pts)
    span = max(x1 - x0, 1.0)
    ymax = _nice_max(max(p[1] for p in pts))
    for i in range(5):
        y = top + ph - ph * i / 4
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                     'class="grid"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{_fmt(ymax * i / 4)}</text>')
    parts.append(f'<text x="{left}" y="{height - 8}">-{span:.0f} s</text>'
                 f'<text x="{left + pw}" y="{height - 8}" text-anchor="end">now</text>'
                 f'<text x="12" y="{top + ph / 2:.0f}" transform="rotate(-90 12 '
                 f'{top + ph / 2:.0f})" text-anchor="middle">{escape(y_label)}</text>')
    for i, (label, points) in enumerate(series.items()):
        color, dash, marker = STYLES[i % len(STYLES)]
        xy = [(left + pw * (x - x0) / span, top + ph - ph * min(y, ymax) / ymax)
              for x, y in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                     f'stroke-width="2"{dash_attr}/>')
        for x, y in xy[-1:] + xy[:: max(1, len(xy) // 8)]:
            parts.append(_marker(marker, x, y, color))
        ly = top + 14 + i * 18
        parts.append(f'<line x1="{left + pw + 10}" x2="{left + pw + 34}" y1="{ly - 4}" '
                     f'y2="{ly - 4}" stroke="{color}" stroke-width="2"{dash_attr}/>')
        parts.append(_marker(marker, left + pw + 22, ly - 4, color))
        parts.append(f'<text x="{left + pw + 38}" y="{ly}">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _fmt(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == 0 else f"{v:.2g}"


def confusion_matrix(labels: Sequence[str], matrix: Sequence[Sequence[float]],
                     title: str = "Confusion matrix") -> Markup:
    """Rows: actual class, columns: predicted class; each cell prints its count and is
    shaded by its share of the row (darker = more), with the text colour flipped to stay
    legible."""
    n = len(labels)
    cell, left, top = 64, 120, 60
    width, height = left + n * cell + 20, top + n * cell + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{left + n * cell / 2:.0f}" y="20" text-anchor="middle" '
             f'class="chart-title">predicted</text>',
             f'<text x="16" y="{top + n * cell / 2:.0f}" transform="rotate(-90 16 '
             f'{top + n * cell / 2:.0f})" text-anchor="middle" class="chart-title">actual</text>']
    for j, lab in enumerate(labels):
        parts.append(f'<text x="{left + j * cell + cell / 2:.0f}" y="{top - 8}" '
                     f'text-anchor="middle"><title>{escape(lab)}</title>{escape(_short(lab, 9))}'
                     '</text>')
    for i, row in enumerate(matrix):
        parts.append(f'<text x="{left - 8}" y="{top + i * cell + cell / 2 + 4:.0f}" '
                     f'text-anchor="end"><title>{escape(labels[i])}</title>'
                     f'{escape(_short(labels[i], 16))}</text>')
        total = sum(row) or 1
        for j, value in enumerate(row):
            share = value / total
            shade = int(245 - 190 * share)
            fg = "#fff" if share > 0.5 else "#111"
            x, y = left + j * cell, top + i * cell
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" '
                         f'fill="rgb({shade},{shade},{min(255, shade + 10)})" stroke="#555"/>'
                         f'<text x="{x + cell / 2:.0f}" y="{y + cell / 2 + 5:.0f}" '
                         f'text-anchor="middle" fill="{fg}" class="cell" '
                         f'data-row="{i}" data-col="{j}">{_count(value)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _count(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3g}"


def roc_curve(fpr: Sequence[float], tpr: Sequence[float], auc: float | None = None,
              title: str = "ROC curve") -> Markup:
    size, pad = 240, 40
    width, height = size + pad * 2, size + pad * 2
    pts = " ".join(f"{pad + size * x:.1f},{pad + size * (1 - y):.1f}"
                   for x, y in zip(fpr, tpr, strict=False))
    label = title if auc is None else f"{title} (AUC {auc:.3f})"
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'<text x="{pad}" y="20" class="chart-title">{escape(label)}</text>'
        f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#555"/>'
        f'<line x1="{pad}" y1="{pad + size}" x2="{pad + size}" y2="{pad}" stroke="#888" '
        f'stroke-dasharray="4 4"/>'
        f'<polyline points="{pts}" fill="none" stroke="#1f5fa8" stroke-width="2"/>'
        f'<text x="{pad + size / 2:.0f}" y="{height - 8}" text-anchor="middle">false positive '
        f'rate</text><text x="12" y="{pad + size / 2:.0f}" transform="rotate(-90 12 '
        f'{pad + size / 2:.0f})" text-anchor="middle">true positive rate</text></svg>')


STATE_STYLE = {"SUCCEEDED": ("#e3f1e4", "solid"), "CACHED": ("#e6eef8", "4 2"),
               "RUNNING": ("#fff4d6", "2 2"), "FAILED": ("#fbe3e1", "solid"),
               "SKIPPED": ("#eeeeee", "6 3"), "PENDING": ("#ffffff", "2 4")}


def dag(tasks: Sequence[Mapping[str, Any]], title: str = "Pipeline") -> Markup:
    """Tasks (``name``, ``state``, ``after``: upstream names) in layers by depth; each box
    says its state in words (and by border pattern)."""
    by_name = {str(t["name"]): t for t in tasks}
    depth: dict[str, int] = {}

    def level(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in depth:
            return depth[name]
        ups = [u for u in by_name[name].get("after", ()) if u in by_name and u not in seen]
        d = 0 if not ups else 1 + max(level(u, seen | {name}) for u in ups)
        depth[name] = d
        return d

    for name in by_name:
        level(name)
    layers: dict[int, list[str]] = {}
    for name, d in depth.items():
        layers.setdefault(d, []).append(name)
    bw, bh, gx, gy = 170, 46, 40, 24
    cols = max(layers) + 1 if layers else 1
    rows = max((len(v) for v in layers.values()), default=1)
    width, height = cols * (bw + gx) + gx, rows * (bh + gy) + gy + 20
    pos = {name: (gx + d * (bw + gx), 20 + gy + i * (bh + gy))
           for d, names in layers.items() for i, name in enumerate(sorted(names))}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart dag" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for name, t in by_name.items():
        x, y = pos[name]
        for u in t.get("after", ()):
            if u in pos:
                ux, uy = pos[u]
                parts.append(f'<line x1="{ux + bw}" y1="{uy + bh / 2:.0f}" x2="{x}" '
                             f'y2="{y + bh / 2:.0f}" stroke="#666" marker-end="url(#arrow)"/>')
    parts.insert(1, '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
                    'markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 '
                    'z" fill="#666"/></marker></defs>')
    for name, t in by_name.items():
        x, y = pos[name]
        state = str(t.get("state", "PENDING")).upper()
        fill, dash = STATE_STYLE.get(state, ("#ffffff", "solid"))
        dash_attr = "" if dash == "solid" else f' stroke-dasharray="{dash}"'
        parts.append(f'<g class="task" data-task="{escape(name)}" data-state="{escape(state)}">'
                     f'<rect x="{x}" y="{y}" width="{bw}" height="{bh}" rx="6" fill="{fill}" '
                     f'stroke="#333" stroke-width="1.5"{dash_attr}/>'
                     f'<text x="{x + 8}" y="{y + 18}" class="task-name">{escape(name[:24])}'
                     f'</text><text x="{x + 8}" y="{y + 36}">{escape(state.lower())}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))
