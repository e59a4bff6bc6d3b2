"""Server-rendered SVG charts for the manager's dashboard: no chart library, nothing from a CDN.

Each function takes plain numbers and names and returns SVG markup safe to put in a template
(every name is escaped). Each chart has a <title> and a text table beside it in the template, so
the figures are readable without the picture.
"""

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2457d6", "#d6572f", "#2f9e5b", "#8a4fd6", "#c99a0e", "#1b9fb3", "#d63f8c", "#6b7280")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _svg(width: int, height: int, title: str, body: list[str]) -> SafeString:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" {FONT}><title>{escape(title)}</title>'
    )
    return mark_safe(head + "".join(body) + "</svg>")


def hbars(title: str, rows: Sequence[tuple[str, float]], *, unit: str = "", width: int = 640) -> SafeString:
    """Horizontal bars, one per (name, value), longest first as given."""
    bar_h, gap, left, right = 22, 6, 160, 70
    height = max(1, len(rows)) * (bar_h + gap) + gap
    top = max((value for _, value in rows), default=0) or 1
    body: list[str] = []
    for i, (name, value) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = (width - left - right) * value / top
        body.append(
            f'<text x="{left - 8}" y="{y + bar_h * 0.7:.1f}" text-anchor="end">{escape(name)}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color(i)}" rx="3"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + bar_h * 0.7:.1f}">{value:,.0f}{escape(unit)}</text>'
        )
    if not rows:
        body.append(f'<text x="{left}" y="16">nothing yet</text>')
    return _svg(width, height, title, body)


def lines(
    title: str, x_labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, width: int = 640
) -> SafeString:
    """One line per (name, values) over the x labels, with a legend under the axis."""
    left, right, top, plot_h = 40, 16, 12, 160
    legend_rows = (len(series) + 3) // 4
    height = top + plot_h + 28 + 18 * legend_rows
    n = max(1, len(x_labels) - 1)
    peak = max((max(values, default=0) for _, values in series), default=0) or 1
    plot_w = width - left - right

    def x(i: int) -> float:
        return left + plot_w * i / n

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / peak

    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#d8dce4"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end">{peak:,.0f}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    step = max(1, len(x_labels) // 6)
    for i in range(0, len(x_labels), step):
        body.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{escape(x_labels[i])}</text>')
    for k, (name, values) in enumerate(series):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        body.append(f'<polyline points="{points}" fill="none" stroke="{color(k)}" stroke-width="2"/>')
        lx, ly = left + (k % 4) * (plot_w / 4), top + plot_h + 34 + 18 * (k // 4)
        body.append(
            f'<rect x="{lx:.1f}" y="{ly - 9}" width="10" height="10" fill="{color(k)}"/>'
            f'<text x="{lx + 14:.1f}" y="{ly}">{escape(name)}</text>'
        )
    if not series:
        body.append(f'<text x="{left + 8}" y="{top + plot_h / 2}">no answers in this window</text>')
    return _svg(width, height, title, body)
