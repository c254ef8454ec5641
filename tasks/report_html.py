"""The per-run evaluation report: one self-contained HTML page with inline SVG charts
(metric bars against the baselines and the champion, coverage, list lengths, scores).
Plain SVG keeps the report dependency-free and readable straight from S3."""

from __future__ import annotations

import html

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

COLORS = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#a463f2", "#97bbf5")
W, H, PAD = 560, 220, 40


def bars(title: str, groups: list[str], series: dict[str, list[float]]) -> str:
    """Grouped vertical bars: one group per entry of ``groups``, one bar per series."""
    top = max([v for vals in series.values() for v in vals if np.isfinite(v)] + [1e-9])
    gw = (W - 2 * PAD) / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    parts = []
    for g, group in enumerate(groups):
        x0 = PAD + g * gw + gw * 0.1
        parts.append(f'<text x="{x0 + gw * 0.4:.1f}" y="{H - PAD + 14}" text-anchor="middle">{html.escape(group)}</text>')
        for s, (name, vals) in enumerate(series.items()):
            v = vals[g] if np.isfinite(vals[g]) else 0.0
            h = (H - 2 * PAD) * v / top
            x = x0 + s * bw
            parts.append(f'<rect x="{x:.1f}" y="{H - PAD - h:.1f}" width="{bw * 0.9:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[s % len(COLORS)]}"><title>{html.escape(name)} {group}: {v:.4f}</title></rect>')
    legend = "".join(f'<tspan fill="{COLORS[s % len(COLORS)]}">&#9632; {html.escape(n)}  </tspan>'
                     for s, n in enumerate(series))
    return _svg(title, "".join(parts) + f'<text x="{PAD}" y="{PAD - 8}">{legend}</text>', top)


def histogram(title: str, values: np.ndarray, bins: int = 20) -> str:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if not len(values):
        return _svg(title, f'<text x="{PAD}" y="{H / 2}">no values</text>', 1.0)
    counts, edges = np.histogram(values, bins=bins)
    top = max(counts.max(), 1)
    bw = (W - 2 * PAD) / len(counts)
    parts = [f'<rect x="{PAD + i * bw:.1f}" y="{H - PAD - (H - 2 * PAD) * c / top:.1f}" width="{bw * 0.95:.1f}" '
             f'height="{(H - 2 * PAD) * c / top:.1f}" fill="{COLORS[0]}"><title>[{lo:.3g}, {hi:.3g}): {c}</title></rect>'
             for i, (c, lo, hi) in enumerate(zip(counts, edges[:-1], edges[1:]))]
    parts.append(f'<text x="{PAD}" y="{H - PAD + 14}">{edges[0]:.3g}</text>'
                 f'<text x="{W - PAD}" y="{H - PAD + 14}" text-anchor="end">{edges[-1]:.3g}</text>')
    return _svg(title, "".join(parts), float(top))


def _svg(title: str, body: str, top: float) -> str:
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg width="{W}" height="{H}" font-size="11" font-family="sans-serif">'
            f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#888"/>'
            f'<text x="{PAD - 4}" y="{PAD}" text-anchor="end">{top:.3g}</text>{body}</svg></figure>')


def table(metrics: dict[str, dict]) -> str:
    cols = ("ndcg", "recall", "hr", "mrr", "coverage", "novelty", "users")
    head = "".join(f"<th>{c}</th>" for c in ("method", *cols))
    rows = "".join("<tr><td>" + html.escape(m) + "</td>" + "".join(
        f"<td>{v[c]:.4f}</td>" if isinstance(v[c], float) else f"<td>{v[c]}</td>" for c in cols) + "</tr>"
        for m, v in metrics.items())
    return f"<table><tr>{head}</tr>{rows}</table>"


def evaluation_html(result: dict, staged: pa.Table, n_items: int) -> str:
    """``result``: what :func:`tasks.evaluate.evaluate` writes to ``evaluation.json``;
    ``staged``: the run's lists (user_id, item_id, score, source), counted in Arrow: pandas'
    groupby over a million users' 20M string rows took over a minute."""
    k, gate = result["k"], result["gate"]
    status = "passed" if gate["passed"] else ("blocked, forced" if gate["forced"] else "BLOCKED")
    sections = [f"<h1>nightrecs evaluation, run date {result['date']}</h1>",
                f"<p>Model {result['model_version']}; holdout: the {result['holdout_days']} days before the run "
                f"date; {result['warm_users']} warm and {result['cold_users']} cold users; metrics at K = {k}.</p>",
                f"<p><b>Publish gate: {status}.</b> {html.escape(gate['verdict'])}</p>"]
    for segment in ("warm", "cold"):
        m = result["metrics"][segment]
        sections.append(f"<h2>{segment} users</h2>" + table(m))
        sections.append(bars(f"{segment} users: metrics @{k}", ["ndcg", "recall", "hr", "mrr"],
                             {name: [v[c] for c in ("ndcg", "recall", "hr", "mrr")] for name, v in m.items()}))
    warm = result["metrics"]["warm"]
    sections.append(bars("warm users: catalog coverage of the lists", ["coverage"],
                         {name: [v["coverage"]] for name, v in warm.items()}))
    lengths = pc.value_counts(staged["user_id"]).field("counts").to_numpy()
    sections.append(histogram(f"published list lengths ({len(lengths)} users)", lengths, bins=min(20, max(lengths.max(initial=1), 1))))
    shown = pc.value_counts(staged["item_id"]).field("counts").to_numpy()
    sections.append(histogram(f"lists per item ({len(shown)} of {n_items} items shown)", shown))
    for source in sorted(pc.unique(staged["source"]).to_pylist()):
        scores = staged.filter(pc.equal(staged["source"], source))["score"].to_numpy()
        sections.append(histogram(f"scores of '{source}' items ({len(scores)} rows)", scores))
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}figure{margin:1em 0}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>nightrecs evaluation {result['date']}</title>" \
           f"<style>{style}</style></head><body>{''.join(sections)}</body></html>"
