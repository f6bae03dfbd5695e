"""Charts as plotly figures, serialised to JSON for the page (plotly.js draws them).

No agent-provided string goes into a figure: axis labels and trace names are fixed
here, so nothing in a chart needs escaping beyond the JSON embedding (the template's
`tojson`, which escapes <, > and &).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lockstep_dashboard._journal import STATS_FIELDS

__all__ = ["flow_figure", "timeline_figure"]

_LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
    "showlegend": False,
    "template": "none",
    "plot_bgcolor": "white",
    "paper_bgcolor": "white",
}


def _as_json(fig: go.Figure) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(fig.to_json())
    return out


def timeline_figure(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One subplot per per-tick statistic (STATS_FIELDS), sharing the tick axis; trace i
    is STATS_FIELDS[i], so a live page extends them in that order."""
    fig = make_subplots(
        rows=len(STATS_FIELDS),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        subplot_titles=[label for _, label in STATS_FIELDS],
    )
    ticks = [r["tick"] for r in rows]
    for i, (name, label) in enumerate(STATS_FIELDS, start=1):
        fig.add_trace(
            go.Scatter(
                x=ticks,
                y=[r.get(name) for r in rows],
                name=label,
                mode="lines+markers",
                marker={"size": 4},
                line={"shape": "hv"},
            ),
            row=i,
            col=1,
        )
    fig.update_xaxes(title_text="tick", row=len(STATS_FIELDS), col=1)
    fig.update_layout(height=170 * len(STATS_FIELDS), **_LAYOUT)
    return _as_json(fig)


def flow_figure(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per tick of a range: messages sent, delivered and undeliverable (tick.stats)."""
    ticks = [r["tick"] for r in rows]
    fig = go.Figure()
    for name, label in (
        ("sent", "sent"),
        ("messages", "delivered"),
        ("undeliverable", "undeliverable"),
    ):
        fig.add_trace(go.Bar(x=ticks, y=[r.get(name) for r in rows], name=label))
    fig.update_layout(
        height=260,
        barmode="group",
        xaxis_title="tick",
        yaxis_title="messages",
        **{**_LAYOUT, "showlegend": True},
    )
    return _as_json(fig)
