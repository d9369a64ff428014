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
from genrec.errors import ConfigError

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


def test_every_ml100k_preset_has_expected_metrics_and_the_runs_behind_the_readme():
  ml100k = [m for m in registry.list_models() if f"{m}:ml100k" in genrec.configs.list_configs()]
  assert len(ml100k) >= 12
  runs = {}
  for f in sorted((ROOT / "benchmarks" / "results").glob("check-ml100k-*.json")):
    runs.update(json.loads(f.read_text()))
  for model in ml100k:
    e = expected.entry(model, "ml100k")
    assert e["metrics"] and e["command"].startswith("python benchmarks/check_presets.py --presets ml100k")
    assert all(s["tolerance"] > 0 for s in e["metrics"].values())
    got = runs[f"{model}:ml100k"]
    assert got["seeds"] == e["seeds"]  # the check may run at a later commit than the record
    assert expected.check(model, "ml100k", got["runs"]) == []


@pytest.mark.parametrize("model", TINY)
def test_the_tiny_preset_scores_what_is_recorded(model, tmp_path, stage_cache):
  cfg = genrec.configs.get(f"{model}:tiny")
  cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, progress=False))
  results = pipeline.train(cfg, tmp_path / model, resume=False)
  assert expected.check(model, "tiny", [results]) == []


def test_check_presets_jobs_runs_seeds_in_processes_with_the_metrics_of_one_at_a_time(tmp_path, stage_cache):
  check = bench("check_presets")
  common = ["--presets", "tiny", "--models", "sasrec", "--seeds", "0,1"]
  assert check.main([*common, "--json", str(tmp_path / "one.json"), "--workdir", str(tmp_path / "one")]) == 0
  two = [*common, "--jobs", "2", "--json", str(tmp_path / "two.json"), "--workdir", str(tmp_path / "two")]
  assert check.main(two) == 0  # in tolerance: the children ran the preset with each seed
  one, two = (json.loads((tmp_path / f"{n}.json").read_text())["sasrec:tiny"] for n in ("one", "two"))
  assert two["seeds"] == [0, 1] and (tmp_path / "two" / "sasrec" / "seed1.log").exists()
  for a, b in zip(one["runs"], two["runs"], strict=True):  # this process has 8 CPU devices, a child 1
    for split in ("valid", "test"):
      assert b[split] == pytest.approx(a[split], abs=1e-5)
  assert one["runs"][0]["test"] != one["runs"][1]["test"]  # the seeds differ, so the order is checked too
  with pytest.raises(SystemExit, match="--jobs must be 1 or more"):
    check.main([*common, "--jobs", "0"])


def test_check_presets_set_runs_an_experiment_that_resume_continues(tmp_path, stage_cache):
  """--set trains the preset with more settings (and says so); --resume in the same workdir continues that run
  (finished: not one more step) and refuses one of another config; --set cannot --record."""
  check = bench("check_presets")
  work = ["--presets", "tiny", "--models", "sasrec", "--workdir", str(tmp_path / "w")]
  stop = ["--set", "trainer.steps=30", "--json"]
  check.main([*work, *stop, str(tmp_path / "a.json")])  # 30 steps: out of tolerance, whatever it returns
  log = (tmp_path / "w" / "sasrec" / "seed0" / "metrics.jsonl").read_text()
  (tmp_path / "w" / "sasrec" / "seed0" / "mine").write_text("kept")  # a fresh run would start in an empty folder
  check.main([*work, *stop, str(tmp_path / "b.json"), "--resume"])
  a, b = (json.loads((tmp_path / f"{n}.json").read_text())["sasrec:tiny"]["runs"][0] for n in "ab")
  assert a["steps"] == b["steps"] == 30 and a["test"] == b["test"]
  steps = lambda text: [json.loads(line)["step"] for line in text.splitlines() if '"loss"' in line]
  assert steps((tmp_path / "w" / "sasrec" / "seed0" / "metrics.jsonl").read_text()) == steps(log)
  assert (tmp_path / "w" / "sasrec" / "seed0" / "mine").exists()
  with pytest.raises(ConfigError, match="different config"):
    check.main([*work, "--resume", "--set", "trainer.steps=30", "model.dropout=0.4"])
  with pytest.raises(SystemExit, match="cannot --record"):
    check.main([*work, "--set", "trainer.steps=30", "--record"])
  with pytest.raises(SystemExit, match="name it"):
    check.main(["--presets", "tiny", "--resume"])


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


def test_readme_tables_merges_several_run_files_and_names_each_command(tmp_path):
  def runs(spec, ndcg, command):
    result = {"test": {"ndcg@10": ndcg}, "valid": {"ndcg@10": ndcg}, "protocol": {"split": "leave_one_out"}}
    return {spec: {"runs": [result], "command": command, "commit": "abc123"}}

  (tmp_path / "a.json").write_text(json.dumps(runs("sasrec:ml100k", 0.1, "check A")))
  (tmp_path / "b.json").write_text(json.dumps(runs("hstu:ml100k", 0.08, "check B")))
  readme = tmp_path / "README.md"
  readme.write_text("<!-- results:ml100k -->\nold\n<!-- /results -->\n")
  files = [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
  assert bench("readme_tables").main([*files, "--readme", str(readme)]) == 0
  text = readme.read_text()
  assert "| hstu:ml100k | 1 | 0.0800 | 0.0800 |" in text and "| sasrec:ml100k | 1 | 0.1000 | 0.1000 |" in text
  assert "- hstu:ml100k: `check B` at commit abc123" in text and "- sasrec:ml100k: `check A` at commit abc123" in text
  (tmp_path / "c.json").write_text(json.dumps(runs("sasrec:ml100k", 0.2, "check C")))
  with pytest.raises(SystemExit, match="sasrec:ml100k in more than one"):
    bench("readme_tables").main([*files, str(tmp_path / "c.json"), "--readme", str(readme)])
  (tmp_path / "d.json").write_text(json.dumps(runs("sasrec:tiny", 0.2, "check D")))
  with pytest.raises(SystemExit, match="mix presets"):
    bench("readme_tables").main([files[1], str(tmp_path / "d.json"), "--readme", str(readme)])


def test_readme_tables_per_seed_prints_one_row_per_seed_and_leaves_the_readme(tmp_path, capsys):
  def run(valid, test, step):
    return {"valid": {"ndcg@10": valid}, "test": {"ndcg@10": test, "recall@10": 2 * test}, "best_step": step,
            "train_seconds": 1234.4}  # fmt: skip

  runs = {"tiger:ml100k": {"runs": [run(0.1, 0.09, 500), run(0.3, 0.11, 750)], "seeds": [3, 4], "command": "check",
                           "commit": "abc123"}}  # fmt: skip
  (tmp_path / "runs.json").write_text(json.dumps(runs))
  readme = tmp_path / "README.md"
  readme.write_text("<!-- results:ml100k -->\nold\n<!-- /results -->\n")
  args = [str(tmp_path / "runs.json"), "--readme", str(readme), "--per-seed", "tiger:ml100k"]
  assert bench("readme_tables").main(args) == 0
  out = capsys.readouterr().out
  assert "| 3 | 0.1000 | 0.0900 | 0.1800 | – | 500 | 1,234 |" in out
  assert "| 4 | 0.3000 | 0.1100 | 0.2200 | – | 750 | 1,234 |" in out
  assert "| mean | 0.2000 ± 0.1414 | 0.1000 ± 0.0141 | 0.2000 ± 0.0283 | – | | |" in out
  assert "`check` at commit abc123" in out and readme.read_text().endswith("old\n<!-- /results -->\n")
  with pytest.raises(SystemExit, match="sasrec:ml100k is not in"):
    bench("readme_tables").main([*args[:-1], "sasrec:ml100k"])


def test_record_writes_the_larger_of_the_absolute_and_relative_tolerance(tmp_path, monkeypatch):
  monkeypatch.setattr(expected, "FOLDER", tmp_path)
  run = {"test": {"recon": 0.5, "ndcg@10": 0.1}, "valid": {"recon": 0.4}, "protocol": {"split": "catalogue"}}
  expected.record(
    "toy", "ml100k", [run], best_metric="recon", seeds=[0], tolerance=0.01, rel_tolerance=0.05,
    command="python benchmarks/check_presets.py", commit="abc", when="2026-12-04",
  )  # fmt: skip
  metrics = expected.entry("toy", "ml100k")["metrics"]
  assert metrics["test/recon"] == {"value": 0.5, "tolerance": 0.025}
  assert metrics["valid/recon"] == {"value": 0.4, "tolerance": 0.02}
  assert metrics["test/ndcg@10"] == {"value": 0.1, "tolerance": 0.01}
  assert expected.check("toy", "ml100k", [{**run, "test": {"recon": 0.524, "ndcg@10": 0.1}}]) == []
  assert len(expected.check("toy", "ml100k", [{**run, "test": {"recon": 0.526, "ndcg@10": 0.1}}])) == 1
