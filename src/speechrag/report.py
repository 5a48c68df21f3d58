"""What people read: hit tables with mm:ss times, evaluation tables, and the PNG chart
that compares every evaluation report in a folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from speechrag.index import Hit
from speechrag.timestamps import mmss

REPORT_SUFFIX = ".report.json"
CHART_FILE = "comparison.png"


def shown_source(source: str) -> str:
    """A hit's source as a table shows it: a path under the working folder relative to it,
    one under the home folder as ``~/...``, anything else (a document id) as it is. JSON
    output keeps the source as indexed."""
    path = Path(source)
    if not path.is_absolute():
        return source
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        if path.is_relative_to(base) and path != base:
            return prefix + str(path.relative_to(base))
    return source


def hits_table(query: str, hits: list[Hit], text_width: int = 80) -> Table:
    table = Table(title=Text(query, style="bold"), title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("source", overflow="fold")
    table.add_column("start", justify="right")
    table.add_column("end", justify="right")
    table.add_column("text", overflow="fold", max_width=text_width)
    for i, h in enumerate(hits, start=1):
        text = (h.text or "")
        if len(text) > text_width * 2:
            text = text[: text_width * 2 - 1] + "…"
        table.add_row(str(i), f"{h.score:.3f}", Text(shown_source(h.source)), mmss(h.start),
                      mmss(h.end), Text(text))
    return table


def info_table(summary: dict[str, Any]) -> Table:
    """``speechrag info``: an index's summary as a two-column table."""
    model = summary["model"]
    name = model.get("checkpoint", model.get("whisper", ""))
    seg = summary["segmenter"]
    cut = (f"VAD, up to {seg['window_s']:g} s" if seg.get("vad")
           else f"{seg['window_s']:g} s windows every {seg['hop_s']:g} s")
    table = Table(title=summary["index"], show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in (
            ("model", f"{model['kind']} {shown_source(str(name))}".strip()),
            ("files", f"{summary['files']} ({summary['audio_hours']:.2f} h of audio)"),
            ("documents", str(summary["documents"])),
            ("segments", f"{summary['segments']} ({cut})"),
            ("search", summary["search"]),
            ("created", summary["created"]), ("updated", summary["updated"])):
        table.add_row(key, value)
    if summary["orphan_segments"]:
        table.add_row("note", f"{summary['orphan_segments']} segments of no recorded file "
                      "(an interrupted run): `speechrag remove` or `index` that file again")
    return table


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def eval_table(report: dict[str, Any]) -> Table:
    r = report["retrieval"]
    asked = "spoken queries" if report.get("queries_spoken") else "written queries"
    table = Table(title=Text(f"{report['model']} on {report['corpus']} ({asked})",
                             style="bold"),
                  title_justify="left")
    for col in ("queries", "n", "R@1", "R@5", "R@10", "MRR"):
        table.add_column(col, justify="right" if col != "queries" else "left")
    rows = [("all", r["overall"])]
    rows += [(f"kind={k}", v) for k, v in r["by_kind"].items()]
    rows += [(f"voice={k}", v) for k, v in r["by_voice"].items()]
    for name, m in rows:
        table.add_row(Text(name), str(m["n"]), _pct(m["R@1"]), _pct(m["R@5"]), _pct(m["R@10"]),
                      _pct(m["MRR"]))
    ix = report["indexing"]
    lat = report["query_latency_ms"]
    wer = report.get("wer")
    what = (f"{ix['n_segments']} text documents" if ix.get("rtf") is None else
            f"{ix['audio_s']:.0f} s of audio (RTF {ix['rtf']:.3f})")
    table.caption = (f"indexing {ix['wall_s']:.1f} s for {what}; "
                     f"query latency p50 {lat['p50']:.0f} ms, "
                     f"p95 {lat['p95']:.0f} ms; WER "
                     + ("-" if wer is None else f"{100 * wer:.1f}%"))
    return table


def report_name(report: dict[str, Any]) -> str:
    """``cascade``, ``cascade-hybrid`` for hybrid search, or ``cascade-spoken`` for spoken
    queries: a report's file name and label."""
    from speechrag.evaluate import safe_name  # the evaluator, only when reports are read

    return (safe_name(report["model"]) + ("-hybrid" if report.get("hybrid") else "")
            + ("-spoken" if report.get("queries_spoken") else ""))


def write_report(report: dict[str, Any], out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{report_name(report)}{REPORT_SUFFIX}"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def load_reports(out: str | Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(Path(out).glob(f"*{REPORT_SUFFIX}"))]


def plot_reports(out: str | Path) -> Path:
    """One PNG comparing every report in ``out``: R@1/R@5/R@10/MRR per query kind, and
    indexing real-time factor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = load_reports(out)
    kinds = sorted({k for r in reports for k in r["retrieval"]["by_kind"]})
    panels = ["overall", *kinds]
    metrics = ["R@1", "R@5", "R@10", "MRR"]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 4),
                             squeeze=False)
    width = 0.8 / max(len(reports), 1)
    for ax, panel in zip(axes[0], panels, strict=False):
        for i, r in enumerate(reports):
            block = r["retrieval"]["overall"] if panel == "overall" else \
                r["retrieval"]["by_kind"].get(panel)
            if block is None:
                continue
            xs = [j + i * width for j in range(len(metrics))]
            ax.bar(xs, [100 * block[m] for m in metrics], width, label=report_name(r))
        ax.set_xticks([j + width * (len(reports) - 1) / 2 for j in range(len(metrics))], metrics)
        ax.set_ylim(0, 100)
        ax.set_title(f"queries: {panel}")
        ax.set_ylabel("%")
        ax.grid(axis="y", alpha=0.3)
    ax = axes[0][-1]
    ax.bar([report_name(r) for r in reports], [r["indexing"]["rtf"] or 0.0 for r in reports],
           color=[f"C{i}" for i in range(len(reports))])
    ax.set_title("indexing real-time factor (lower is faster)")
    ax.tick_params(axis="x", rotation=30)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=max(len(reports), 1), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    path = Path(out) / CHART_FILE
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
