"""CI's part of the reproducibility check: every model's tiny preset, trained from a clean stage cache, scores
what genrec/configs/expected_metrics/<model>.json records (benchmarks/check_presets.py runs the ml100k part);
the check and the README table writer catch what they are for."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

import genrec.configs
from genrec import expected, pipeline, registry

ROOT = Path(__file__).resolve().parents[1]
TINY = [m for m in registry.list_models() if f"{m}:tiny" in genrec.configs.list_configs()]


def bench(name: str):
  spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_tiny_preset_has_expected_metrics_with_their_command_and_commit():
  for model in TINY:
    e = expected.entry(model, "tiny")
    assert e["metrics"] and e["seeds"] == [0] and e["command"].startswith("python benchmarks/check_presets.py")
    assert e["commit"] and e["protocol"]["split"]


@pytest.mark.parametrize("model", TINY)
def test_the_tiny_preset_scores_what_is_recorded(model, tmp_path, stage_cache):
  cfg = genrec.configs.get(f"{model}:tiny")
  cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, progress=False))
  results = pipeline.train(cfg, tmp_path / model, resume=False)
  assert expected.check(model, "tiny", [results]) == []


def test_the_check_reports_a_run_out_of_tolerance():
  model = TINY[0]
  e = expected.entry(model, "tiny")
  name, spec = next(iter(e["metrics"].items()))
  split, metric = name.split("/")
  off = {"valid": {}, "test": {}, "protocol": e["protocol"]}
  for n, s in e["metrics"].items():
    off[n.split("/")[0]][n.split("/")[1]] = s["value"]
  off[split][metric] = spec["value"] + 2 * spec["tolerance"]
  (problem,) = expected.check(model, "tiny", [off])
  assert f"{model}:tiny {name} = " in problem and "expected" in problem
  off[split][metric] = spec["value"]
  assert expected.check(model, "tiny", [off]) == []


def test_readme_tables_rewrites_only_its_block(tmp_path):
  runs = {
    "sasrec:tiny": {
      "runs": [
        {"test": {"ndcg@10": 0.5, "recall@10": 0.7}, "valid": {"ndcg@10": 0.6}, "protocol": {"split": "leave_one_out"}},
        {"test": {"ndcg@10": 0.7, "recall@10": 0.9}, "valid": {"ndcg@10": 0.8}, "protocol": {"split": "leave_one_out"}},
      ],
      "command": "python benchmarks/check_presets.py --presets tiny --seeds 0,1",
      "commit": "abc123",
    }
  }
  (tmp_path / "runs.json").write_text(json.dumps(runs))
  readme = tmp_path / "README.md"
  readme.write_text("before\n<!-- results:tiny -->\nold numbers\n<!-- /results -->\nafter\n")
  assert bench("readme_tables").main([str(tmp_path / "runs.json"), "--readme", str(readme)]) == 0
  text = readme.read_text()
  assert text.startswith("before\n<!-- results:tiny -->\n| preset |") and text.endswith("<!-- /results -->\nafter\n")
  assert "| sasrec:tiny | 2 | 0.6000 ± 0.1414 | 0.8000 ± 0.1414 | 0.7000 ± 0.1414 |" in text
  assert "old numbers" not in text and "`python benchmarks/check_presets.py --presets tiny --seeds 0,1`" in text
  readme.write_text("no block here\n")
  with pytest.raises(SystemExit, match="has no block"):
    bench("readme_tables").main([str(tmp_path / "runs.json"), "--readme", str(readme)])
