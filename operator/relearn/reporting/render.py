"""The report as a person reads it: one self-contained HTML file (plots
embedded as PNG data URIs, no script, no network), a short plain-text
summary for the terminal or a webhook, and the same data as JSON.

Plots are drawn with matplotlib's Agg backend (no display). Every section
and every plot is always present: a plot with nothing to draw says so on
its face, so a missing series is seen, not silently dropped.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

from relearn.core.report import ModelReport
from relearn.reporting.collect import Series

SECTIONS = ("summary", "timeline", "accuracy", "drift", "retrainings", "experiments", "registry")
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:72rem;color:#1f2328}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{border:1px solid #d0d7de;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}img.plot{max-width:100%;display:block;margin:.5rem 0}
.note{color:#9a6700}.muted{color:#656d76}
"""


def _when(moment: datetime.datetime | None) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    value = float(value)
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value * 100:+.1f} pts" if signed else f"{value * 100:.1f} %"


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _count(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


# -- plots -------------------------------------------------------------------------


def _figure(draw: Callable[[Any], bool], title: str, ylabel: str) -> str:
    """A PNG data URI of one plot; ``draw`` returns False when it had nothing to draw."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    figure, axes = plt.subplots(figsize=(9, 3.2), dpi=90)
    try:
        drew = draw(axes)
        if not drew:
            axes.text(0.5, 0.5, "no data in this period", ha="center", va="center", transform=axes.transAxes)
            axes.set_xticks([])
            axes.set_yticks([])
        else:
            if getattr(axes, "_relearn_dates", False):
                locator = AutoDateLocator()  # type: ignore[no-untyped-call]
                axes.xaxis.set_major_locator(locator)
                axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
            if axes.get_legend_handles_labels()[0]:
                axes.legend(loc="best", fontsize=8)
        axes.set_title(title, fontsize=10)
        axes.set_ylabel(ylabel, fontsize=9)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _dates(points: Sequence[tuple[float, float]]) -> tuple[list[datetime.datetime], list[float]]:
    return [datetime.datetime.fromtimestamp(t, datetime.UTC) for t, _ in points], [v for _, v in points]


def _mark_dates(axes: Any) -> None:
    axes._relearn_dates = True


def plot_timeline(report: ModelReport) -> str:
    def draw(axes: Any) -> bool:
        rows = list(report.versions)
        if not rows:
            return False
        _mark_dates(axes)
        for row in range(len(rows)):
            axes.plot([report.start, report.end], [row, row], color="#d0d7de", linewidth=1)
        marks = {"Promoted": ("^", "#1a7f37"), "RolledBack": ("v", "#cf222e"), "Rejected": ("x", "#9a6700")}
        index = {v.version: i for i, v in enumerate(rows)}
        for entry in report.timeline:
            marker, colour = marks.get(entry.action, ("o", "#656d76"))
            axes.scatter([entry.time], [index.get(entry.version, 0)], marker=marker, color=colour, zorder=3, s=40)
        for action, (marker, colour) in marks.items():
            axes.scatter([], [], marker=marker, color=colour, label=action)
        for entry in report.timeline:
            if entry.action == "Promoted" and entry.version in index:
                axes.annotate(
                    entry.version,
                    (entry.time, index[entry.version]),
                    fontsize=7,
                    xytext=(3, 4),
                    textcoords="offset points",
                )
        axes.set_yticks(range(len(rows)), [v.version for v in rows])
        axes.set_xlim(report.start, report.end)
        return True

    return _figure(draw, "Versions and their changes of standing", "version")


def plot_accuracy(report: ModelReport, series: Series) -> str:
    def draw(axes: Any) -> bool:
        if not any(series.accuracy.values()):
            return False
        _mark_dates(axes)
        for version, points in sorted(series.accuracy.items()):
            x, y = _dates(points)
            axes.plot(x, y, label=version, linewidth=1.5)
        axes.set_ylim(0, 1.05)
        return True

    return _figure(draw, f"Feedback accuracy per version (rate over {series.window:.0f} s)", "accuracy")


def plot_drift(policy: str, features: dict[str, list[tuple[float, float]]], threshold: float | None) -> str:
    def draw(axes: Any) -> bool:
        if not any(features.values()):
            return False
        _mark_dates(axes)
        for feature, points in sorted(features.items()):
            x, y = _dates(points)
            axes.plot(x, y, label=feature, linewidth=1.2)
        if threshold is not None:
            axes.axhline(threshold, color="#cf222e", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        return True

    return _figure(draw, f"PSI per feature, DriftPolicy {policy}", "PSI")


def plot_weights(name: str, points: list[tuple[float, float]]) -> str:
    def draw(axes: Any) -> bool:
        if not points:
            return False
        _mark_dates(axes)
        x, y = _dates(points)
        axes.step(x, y, where="post", label="challenger", linewidth=1.5)
        axes.set_ylim(-2, 102)
        return True

    return _figure(draw, f"Challenger's share of traffic, {name}", "%")


def plot_lift(name: str, series: Series) -> str:
    sequence = series.lift.get(name)

    def draw(axes: Any) -> bool:
        if sequence is None or not sequence.times:
            return False
        _mark_dates(axes)
        x = [datetime.datetime.fromtimestamp(t, datetime.UTC) for t in sequence.times]
        axes.fill_between(x, sequence.lower, sequence.upper, alpha=0.25, label="confidence sequence")
        axes.plot(x, sequence.lift, label="lift", linewidth=1.5)
        axes.axhline(0, color="#656d76", linewidth=0.8)
        return True

    return _figure(draw, f"Cumulative lift (challenger minus champion), {name}", "lift")


def plot_retrainings(report: ModelReport) -> str:
    def draw(axes: Any) -> bool:
        rows = [r for r in report.retrainings if r.accuracy is not None]
        if not rows:
            return False
        labels = [r.version or r.job for r in rows]
        positions = range(len(rows))
        axes.bar([p - 0.15 for p in positions], [r.champion_accuracy or 0 for r in rows], 0.3, label="champion")
        axes.bar([p + 0.15 for p in positions], [r.accuracy or 0 for r in rows], 0.3, label="retrained")
        axes.set_xticks(list(positions), labels)
        axes.set_xlim(-0.75, max(len(rows), 3) - 0.25)
        axes.set_ylim(0, 1.02)
        return True

    return _figure(draw, "Offline accuracy on held-out data: retrained against champion", "accuracy")


def plot_registry(report: ModelReport) -> str:
    def draw(axes: Any) -> bool:
        seconds = report.stats.champion_seconds
        if not any(seconds.values()):
            return False
        names = sorted(seconds, key=lambda v: -seconds[v])
        longest = max(seconds.values())
        size, unit = next(
            (s, u)
            for s, u in ((86400, "days"), (3600, "hours"), (60, "minutes"), (1, "seconds"))
            if longest >= 2 * s or s == 1
        )
        axes.barh(names, [seconds[n] / size for n in names])
        axes.set_xlabel(f"{unit} as champion in this period", fontsize=9)
        return True

    return _figure(draw, "Time as champion", "version")


# -- the page ----------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(kind: str, uri: str, alt: str) -> str:
    return f'<img class="plot" data-plot="{html.escape(kind)}" alt="{html.escape(alt)}" src="{uri}">'


def summary(report: ModelReport) -> str:
    """A few plain lines: what a person should know about the week."""
    lines = [
        f"Relearn report: {report.namespace}/{report.model}, {_when(report.start)} to {_when(report.end)}",
        f"  champion: {report.champion or 'none'}",
    ]
    promotions = [e for e in report.timeline if e.action == "Promoted"]
    rollbacks = [e for e in report.timeline if e.action == "RolledBack"]
    rejections = [e for e in report.timeline if e.action == "Rejected"]
    lines.append(
        f"  {len(report.retrainings)} retraining(s), {len(report.experiments)} experiment(s), "
        f"{len(promotions)} promotion(s), {len(rejections)} rejection(s), {len(rollbacks)} rollback(s)"
    )
    for experiment in report.experiments:
        lines.append(
            f"  experiment {experiment.name}: {experiment.champion or '?'} vs {experiment.challenger or '?'} "
            f"-> {experiment.phase or 'Pending'}"
            + (
                f" (lift {_pct(experiment.lift, True)}, CI [{_pct(experiment.ci_lower, True)}, "
                f"{_pct(experiment.ci_upper, True)}])"
                if experiment.lift is not None
                else ""
            )
        )
    mean = report.stats.mean_drift_to_fix_seconds
    if mean is not None:
        lines.append(f"  mean time from drift to a promoted fix: {_seconds(mean)}")
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def to_json(reports: Sequence[tuple[ModelReport, Series]]) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, datetime.datetime):
            return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return json.dumps(
        {
            "reports": [
                {**plain(r), "meanDriftToFixSeconds": r.stats.mean_drift_to_fix_seconds, "series": plain(s)}
                for r, s in reports
            ]
        },
        indent=2,
    )


def to_html(reports: Sequence[tuple[ModelReport, Series]], generated: datetime.datetime) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Relearn report, {_when(generated)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Relearn report</h1><p class='muted'>Generated {_when(generated)} by <code>relearn report</code>.</p>",
    ]
    if not reports:
        parts.append("<p>No model in this namespace has a ModelVersion.</p>")
    for report, series in reports:
        parts.append(f"<article data-model='{html.escape(report.model)}'>{_model(report, series)}</article>")
    parts.append("</body></html>")
    return "".join(parts)


def _model(report: ModelReport, series: Series) -> str:
    out = [f"<h1>{html.escape(report.namespace)}/{html.escape(report.model)}</h1>"]
    out.append("<section id='summary'><h2>Summary</h2><pre>" + html.escape(summary(report)) + "</pre></section>")
    rows = [
        [
            _when(e.time),
            e.version,
            e.action,
            e.from_version or "",
            e.to_version or "",
            e.reason or "",
            e.message or "",
            e.triggered_by or "",
        ]
        for e in report.timeline
    ]
    out.append(
        "<section id='timeline'><h2>Champion timeline</h2>"
        + _img("timeline", plot_timeline(report), "versions over time")
        + _table(["time", "version", "action", "from", "to", "reason", "numbers", "triggered by"], rows)
        + "</section>"
    )
    out.append(
        "<section id='accuracy'><h2>Accuracy per version</h2>"
        + _img("accuracy", plot_accuracy(report, series), "feedback accuracy per version over time")
        + "</section>"
    )
    drift = "".join(
        _img(f"drift-{policy}", plot_drift(policy, features, series.drift_thresholds.get(policy)), f"PSI {policy}")
        for policy, features in sorted(series.drift.items())
    ) or _img("drift", plot_drift("(none)", {}, None), "no DriftPolicy")
    out.append(f"<section id='drift'><h2>Drift per feature</h2>{drift}</section>")
    rows = [
        [
            r.job,
            r.version or "",
            ", ".join(r.reasons),
            _when(r.started),
            _seconds(r.duration_seconds),
            r.outcome,
            _pct(r.accuracy),
            _pct(r.champion_accuracy),
            _count(r.samples),
            r.message or "",
        ]
        for r in report.retrainings
    ]
    out.append(
        "<section id='retrainings'><h2>Retrainings</h2>"
        + _img("retrainings", plot_retrainings(report), "offline accuracy of each retraining")
        + _table(
            [
                "Job",
                "version",
                "trigger",
                "started",
                "duration",
                "outcome",
                "accuracy",
                "champion's",
                "samples",
                "message",
            ],
            rows,
        )
        + "</section>"
    )
    experiments = []
    for e in report.experiments:
        experiments.append(
            f"<h3>{html.escape(e.name)}</h3>"
            + _table(
                ["champion", "challenger", "phase", "started", "decision", "lift", "CI", "p", "samples"],
                [
                    [
                        e.champion or "",
                        e.challenger or "",
                        e.phase or "",
                        _when(e.started),
                        f"{e.outcome or ''} {e.reason or ''}: {e.message or ''}",
                        _pct(e.lift, True),
                        f"[{_pct(e.ci_lower, True)}, {_pct(e.ci_upper, True)}]",
                        _num(e.p_value),
                        f"{_count(e.champion_samples)} / {_count(e.challenger_samples)}",
                    ]
                ],
            )
            + _img(f"weights-{e.name}", plot_weights(e.name, series.weights.get(e.name, [])), "traffic weights")
            + _img(f"lift-{e.name}", plot_lift(e.name, series), "cumulative lift")
        )
    out.append(
        "<section id='experiments'><h2>Experiments</h2>"
        + ("".join(experiments) or "<p>No experiment in this period.</p>")
        + "</section>"
    )
    stats = report.stats
    out.append(
        "<section id='registry'><h2>Registry</h2>"
        + _table(["phase", "versions"], [[k, str(v)] for k, v in sorted(stats.versions_by_phase.items())])
        + _table(
            ["mean time from drift to a promoted fix", "fixes"],
            [[_seconds(stats.mean_drift_to_fix_seconds), str(len(stats.drift_to_fix_seconds))]],
        )
        + _img("registry", plot_registry(report), "time as champion")
        + "</section>"
    )
    if report.notes:
        out.append("<ul>" + "".join(f"<li class='note'>{html.escape(n)}</li>" for n in report.notes) + "</ul>")
    return "".join(out)
