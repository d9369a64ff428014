"""`genrec plot RUN`: a PNG of a run's learning curves (training loss, the validation metric that picks the kept
model) from its metrics.jsonl. Needs matplotlib (`pip install 'genrec[plot]'`)."""

from __future__ import annotations

import json
from pathlib import Path

from genrec import extras
from genrec.files import atomic_write


def read_metrics(workdir: Path) -> list[dict]:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    raise FileNotFoundError(f"{workdir} has no metrics.jsonl: not a run folder, or it has not logged a step yet")
  rows = []
  for line in path.read_text().splitlines():
    try:
      rows.append(json.loads(line))
    except ValueError:
      continue  # a line torn by a kill; the next resume drops it
  return rows


def plot_run(workdir: str | Path, out: str | Path | None = None) -> Path:
  """Writes the curves to `out` (default RUN/curves.png); returns its path."""
  extras.need("matplotlib", "genrec plot").use("Agg")
  plt = extras.need("matplotlib.pyplot", "genrec plot")
  workdir = Path(workdir)
  rows = read_metrics(workdir)
  config = json.loads((workdir / "config.json").read_text()) if (workdir / "config.json").exists() else {}
  metric = config.get("trainer", {}).get("best_metric", "ndcg@10")
  train = sorted((r["step"], r["loss"]) for r in rows if r.get("split") == "train" and "loss" in r)
  valid = sorted((r["step"], r[metric]) for r in rows if r.get("split") == "valid" and metric in r)
  if not train and not valid:
    raise ValueError(f"{workdir / 'metrics.jsonl'} holds no train loss and no valid {metric} to plot")
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
  name = f"{config.get('model_name', '?')}:{config.get('preset', '?')}"
  for ax, points, label in ((left, train, "train loss"), (right, valid, f"valid {metric}")):
    if points:
      ax.plot(*zip(*points), marker="." if len(points) < 50 else None)
    ax.set(xlabel="step", ylabel=label, title=f"{name} {label}")
    ax.grid(alpha=0.3)
  out = Path(out) if out is not None else workdir / "curves.png"
  atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=100))
  plt.close(fig)
  return out
