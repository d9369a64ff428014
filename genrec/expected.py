"""What a shipped preset is expected to score: `genrec/configs/expected_metrics/<model>.json`, next to the presets.

    {"tiny": {"metrics": {"test/ndcg@10": {"value": 0.9112, "tolerance": 0.02}, ...},
              "seeds": [0], "protocol": {"split": ..., "candidates": ...},
              "command": "python benchmarks/check_presets.py --presets tiny --models sasrec",
              "commit": "<git commit the values were measured at>", "measured": "<date>"}}

A value is the mean over `seeds` (trainer.seed and data.seed set to each); a run is in tolerance when
|mean - value| <= tolerance. `benchmarks/check_presets.py` re-runs presets and checks them (exit 1 when out of
tolerance) or records new values; CI checks the tiny presets (tests/test_expected_metrics.py).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from genrec.errors import ConfigError
from genrec.files import atomic_write

FOLDER = Path(__file__).parent / "configs" / "expected_metrics"
RANKING = ("test/ndcg@10", "test/recall@10")  # recorded besides the preset's own best metric, where present


def path(model: str) -> Path:
  return FOLDER / f"{model}.json"


def load(model: str) -> dict:
  """{preset: entry} for `model` ({} when nothing is recorded)."""
  p = path(model)
  if not p.is_file():
    return {}
  try:
    return json.loads(p.read_text())
  except ValueError as e:
    raise ConfigError(f"{p} is not JSON: {e}") from None


def entry(model: str, preset: str) -> dict:
  entries = load(model)
  if preset not in entries:
    raise ConfigError(f"no expected metrics recorded for {model}:{preset} in {path(model)}")
  return entries[preset]


def value(results: dict, name: str) -> float:
  split, metric = name.split("/", 1)
  return float(results[split][metric])


def metric_names(results: dict, best_metric: str) -> list[str]:
  """The preset's validation metric on valid and test, plus NDCG@10 / Recall@10 where the task reports them."""
  names = [f"valid/{best_metric}", f"test/{best_metric}"] + [m for m in RANKING if m.split("/")[1] in results["test"]]
  return sorted({n for n in names if n.split("/")[1] in results[n.split("/")[0]]})


def mean_of(runs: list[dict], name: str) -> float:
  return statistics.fmean(value(r, name) for r in runs)


def check(model: str, preset: str, runs: list[dict]) -> list[str]:
  """Problems of `runs` (the results of each seed) against the recorded entry: [] when all are in tolerance."""
  recorded = entry(model, preset)
  problems = []
  for name, spec in recorded["metrics"].items():
    got = mean_of(runs, name)
    if abs(got - spec["value"]) > spec["tolerance"]:
      problems.append(
        f"{model}:{preset} {name} = {got:.4f} over {len(runs)} seed(s), expected {spec['value']:.4f} "
        f"± {spec['tolerance']:.4f}"
      )
  split = runs[0]["protocol"].get("split")
  if recorded.get("protocol", {}).get("split") not in (None, split):
    problems.append(f"{model}:{preset} was recorded under split={recorded['protocol']['split']}, ran split={split}")
  return problems


def record(
  model: str,
  preset: str,
  runs: list[dict],
  *,
  best_metric: str,
  seeds,
  tolerance: float,
  rel_tolerance: float = 0.0,
  command: str,
  commit: str,
  when: str,
):
  """Writes the measured means of `runs` as the expected values of `model:preset` (other presets kept). Each
  metric's tolerance is max(tolerance, rel_tolerance * |value|): a reconstruction error of 0.02 and an NDCG of
  0.1 need different absolute bands."""
  entries = load(model)
  protocol = runs[0]["protocol"]
  means = {name: round(mean_of(runs, name), 4) for name in metric_names(runs[0], best_metric)}
  entries[preset] = {
    "metrics": {
      name: {"value": v, "tolerance": round(max(tolerance, rel_tolerance * abs(v)), 4)} for name, v in means.items()
    },
    "seeds": list(seeds),
    "protocol": {k: protocol[k] for k in ("dataset", "split", "candidates") if k in protocol},
    "command": command,
    "commit": commit,
    "measured": when,
  }
  FOLDER.mkdir(exist_ok=True)
  atomic_write(path(model), json.dumps(entries, indent=1, sort_keys=True) + "\n").chmod(0o644)
