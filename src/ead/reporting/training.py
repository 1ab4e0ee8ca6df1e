"""Training curves of one run as a PNG and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ead.training.logger import read_metrics

PANELS = [
    ("reward/mean", "training reward"),
    ("eval/pass@16", "eval Pass@16"),
    ("eval/mean@16", "eval Mean@16"),
    ("eval/worst@16", "eval Worst@16"),
    ("eval/pass@1", "eval Pass@1"),
    ("entropy/mean", "policy entropy (tau = 1)"),
    ("response/length_mean", "response length (tokens)"),
    ("is/truncated_frac", "importance weight truncated fraction"),
    ("is/kl_behaviour_to_pi", "KL(mu || pi_old) estimate"),
    ("cov/mean", "token covariance Cov(A, log pi) (Clip-/KL-Cov)"),  # panels of absent metrics are skipped
    ("siren/entropy_masked", "SIREN masked nucleus entropy"),
]


def plot_training_curves(records: list[dict], out_png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(key, title) for key, title in PANELS if any(r.get(key) is not None for r in records)]
    columns = 3
    rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if key.startswith("eval/") else None, ms=3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def write_training_report(run_dir: Path) -> Path:
    """``training_curves.png`` and ``report.html`` (PNG embedded, final metrics table) in ``run_dir``."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    png = plot_training_curves(records, run_dir / "training_curves.png")
    final = {}
    for record in records:
        final.update({k: v for k, v in record.items() if v is not None})
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>" for k, v in sorted(final.items())
                   if isinstance(v, (int, float)))
    image = base64.b64encode(png.read_bytes()).decode()
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>ead run {html.escape(run_dir.name)}</title>"
            "<style>body{font-family:sans-serif;max-width:1300px;margin:auto}td{padding:2px 12px}</style></head><body>"
            f"<h1>ead run: {html.escape(str(run_dir))}</h1><img src='data:image/png;base64,{image}' style='width:100%'>"
            f"<h2>Last logged value of each metric</h2><table>{rows}</table></body></html>")
    out = run_dir / "report.html"
    out.write_text(page)
    return out
