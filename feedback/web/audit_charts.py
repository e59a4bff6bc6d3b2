"""Server-rendered SVG charts for the audit page: a line over time, horizontal bars with a
threshold, and a heatmap. Pure: no ORM, no script, nothing fetched; every text is escaped.

Each function returns safe markup: an ``<svg role="img">`` with a ``<title>`` and a ``<desc>``; the
page shows the same figures in tables beside it for anyone who cannot see the chart.
"""

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

INK = "#1d2330"
MUTED = "#5b6475"
GRID = "#d8dce4"
ACCENT = "#2457d6"
SECOND = "#7aa2f7"
ALERT = "#b00020"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _svg(width: int, height: int, title: str, desc: str, body: list[str], *, stretch: bool = True) -> SafeString:
    """``stretch``: as wide as the page allows; else at most its own size (a heatmap's cells)."""
    size = 'width="100%"' if stretch else f'width="{width}" height="{height}"'
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" {size} '
        f'role="img" aria-label="{escape(title)}" class="chart">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    )
    return mark_safe(head + "".join(body) + "</svg>")  # every text above is escaped


def line_chart(
    points: Sequence[tuple[str, float | None]],
    *,
    title: str,
    y_label: str,
    y_min: float = 0.0,
    y_max: float = 1.0,
    width: int = 640,
    height: int = 220,
) -> SafeString:
    """Values over buckets (x labels in order); None values leave a gap in the line."""
    left, right, top, bottom = 48, 12, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    defined = [v for _, v in points if v is not None]
    low = min([y_min, *defined])
    high = max([y_max, *defined])
    span = (high - low) or 1.0

    def x_at(i: int) -> float:
        return left + (plot_w * (i + 0.5) / max(len(points), 1))

    def y_at(v: float) -> float:
        return top + plot_h * (1 - (v - low) / span)

    body = []
    for tick in (low, (low + high) / 2, high):
        y = y_at(tick)
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{MUTED}">{tick:.2f}</text>'
        )
    if low < 0 < high:
        y0 = y_at(0.0)
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y0:.1f}" y2="{y0:.1f}" stroke="{MUTED}"/>')
    segments: list[list[str]] = [[]]
    for i, (_, value) in enumerate(points):
        if value is None:
            segments.append([])
            continue
        segments[-1].append(f"{x_at(i):.1f},{y_at(value):.1f}")
        body.append(
            f'<circle cx="{x_at(i):.1f}" cy="{y_at(value):.1f}" r="3" fill="{ACCENT}">'
            f"<title>{escape(points[i][0])}: {value:.3f}</title></circle>"
        )
    for segment in segments:
        if len(segment) > 1:
            body.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{ACCENT}" stroke-width="2"/>')
    step = max(1, len(points) // 6)
    for i in range(0, len(points), step):
        body.append(
            f'<text x="{x_at(i):.1f}" y="{height - 14}" text-anchor="middle" font-size="11" fill="{MUTED}">'
            f"{escape(points[i][0])}</text>"
        )
    body.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" fill="{MUTED}" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})" text-anchor="middle">{escape(y_label)}</text>'
    )
    desc = "; ".join(f"{name}: {_fmt(value, 3)}" for name, value in points) or "no data"
    return _svg(width, height, title, desc, body)


def bar_chart(
    rows: Sequence[tuple[str, float | None, float | None, bool]],
    *,
    title: str,
    first: str,
    second: str,
    threshold: float | None = None,
    width: int = 640,
) -> SafeString:
    """Per row (name, first value, second value, flagged): two horizontal bars on [0, 1], a
    dashed line at ``threshold``; flagged names in the alert colour."""
    name_w, right, top, bar_h, gap = 140, 48, 28, 9, 10
    row_h = 2 * bar_h + gap
    height = top + row_h * max(len(rows), 1) + 8
    plot_w = width - name_w - right
    body = [
        f'<rect x="{name_w}" y="6" width="10" height="10" fill="{ACCENT}"/>'
        f'<text x="{name_w + 14}" y="15" font-size="11" fill="{INK}">{escape(first)}</text>',
        f'<rect x="{name_w + 150}" y="6" width="10" height="10" fill="{SECOND}"/>'
        f'<text x="{name_w + 164}" y="15" font-size="11" fill="{INK}">{escape(second)}</text>',
    ]
    for i, (name, a, b, flagged) in enumerate(rows):
        y = top + i * row_h
        colour = ALERT if flagged else INK
        mark = " (flagged)" if flagged else ""
        body.append(
            f'<text x="{name_w - 6}" y="{y + bar_h + 3}" text-anchor="end" font-size="12" fill="{colour}">'
            f"{escape(name[:20])}{mark}</text>"
        )
        for j, (value, fill) in enumerate(((a, ACCENT), (b, SECOND))):
            by = y + j * bar_h
            if value is None:
                body.append(f'<text x="{name_w + 4}" y="{by + bar_h - 1}" font-size="9" fill="{MUTED}">n/a</text>')
                continue
            w = plot_w * min(max(value, 0.0), 1.0)
            body.append(
                f'<rect x="{name_w}" y="{by}" width="{w:.1f}" height="{bar_h - 1}" fill="{fill}">'
                f"<title>{escape(name)}: {value:.3f}</title></rect>"
            )
            body.append(
                f'<text x="{name_w + w + 4:.1f}" y="{by + bar_h - 1}" font-size="9" fill="{MUTED}">{value:.2f}</text>'
            )
    if threshold is not None:
        x = name_w + plot_w * threshold
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{height - 4}" stroke="{ALERT}" '
            'stroke-dasharray="4 3"/>'
        )
    desc = "; ".join(f"{n}: {first} {_fmt(a)}, {second} {_fmt(b)}{' (flagged)' if f else ''}" for n, a, b, f in rows)
    return _svg(width, height, title, desc or "no annotators", body)


def heatmap(
    matrix: Sequence[Sequence[float]],
    *,
    rows: Sequence[str],
    columns: Sequence[str],
    title: str,
    row_title: str,
    column_title: str,
    digits: int = 2,
) -> SafeString:
    """A cell per value, shaded by its share of the largest value, the value written in it."""
    cell, left, top = 44, 110, 56
    width = left + cell * max(len(columns), 1) + 12
    height = top + cell * max(len(rows), 1) + 12
    peak = max((v for row in matrix for v in row), default=0.0) or 1.0
    body = [
        f'<text x="{left + cell * len(columns) / 2:.1f}" y="14" text-anchor="middle" font-size="11" '
        f'fill="{MUTED}">{escape(column_title)}</text>',
        f'<text x="8" y="{top - 8}" font-size="11" fill="{MUTED}">{escape(row_title)}</text>',
    ]
    for j, name in enumerate(columns):
        x = left + j * cell + cell / 2
        body.append(
            f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle" font-size="11" fill="{INK}">'
            f"{escape(name[:6])}</text>"
        )
    for i, name in enumerate(rows):
        y = top + i * cell
        body.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.1f}" text-anchor="end" font-size="11" fill="{INK}">'
            f"{escape(name[:14])}</text>"
        )
        for j, value in enumerate(matrix[i]):
            share = max(0.0, min(1.0, value / peak))
            fill = f"rgba(36,87,214,{0.08 + 0.92 * share:.3f})"
            text = "#fff" if share > 0.55 else INK
            x = left + j * cell
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}">'
                f"<title>{escape(rows[i])} / {escape(columns[j])}: {value:.{digits}f}</title></rect>"
                f'<text x="{x + cell / 2 - 1:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" font-size="11" '
                f'fill="{text}">{value:.{digits}f}</text>'
            )
    desc = "; ".join(
        f"{rows[i]}: " + ", ".join(f"{columns[j]} {v:.{digits}f}" for j, v in enumerate(matrix[i]))
        for i in range(len(rows))
    )
    return _svg(width, height, title, desc or "no data", body, stretch=False)
