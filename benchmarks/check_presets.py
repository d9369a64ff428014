"""Re-runs shipped presets and checks their metrics against genrec/configs/expected_metrics/<model>.json.

  python benchmarks/check_presets.py --presets tiny                        # every model's tiny preset (CI's part)
  python benchmarks/check_presets.py --presets ml100k --models sasrec --seeds 0,1,2
  python benchmarks/check_presets.py --presets tiny --record --tolerance 0.02   # write what it measured
  python benchmarks/check_presets.py --presets tiny --json runs/check-tiny.json # for benchmarks/readme_tables.py
  python benchmarks/check_presets.py --presets ml100k --models tiger --seeds 0,1,2 --jobs 3  # seeds side by side
  python benchmarks/check_presets.py --presets ml100k --models tiger --seeds 0 --set model.mask_history=true \
    --workdir runs/try                                                  # an experiment on top of the preset

Each seed sets trainer.seed and data.seed. Prints one table (expected, measured mean, tolerance per metric) and
exits 1 when any preset is out of tolerance or has nothing recorded. --jobs N trains up to N runs at once, each
in its own process (its log in WORKDIR/MODEL/seedS.log); the metrics are the same as one at a time, the times
are not (the runs share the machine). --resume continues the runs already in --workdir (an interrupted check,
or seeds an experiment trained with the settings that the preset now has). Stages (tokenizers, encoders, CF
models) are trained into $GENREC_CACHE as `genrec train` would, or reused from it: point GENREC_CACHE at an
empty folder to check from a clean cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import genrec.configs
from genrec import config as config_lib
from genrec import expected, pipeline, registry
from genrec.errors import ConfigError


def commit() -> str:
  """HEAD's short hash, with "+dirty" when tracked files differ from it (read once, when the run starts: the code
  a run imports is the code it started with)."""
  git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, cwd=Path(__file__).parent).stdout
  try:
    head = git("rev-parse", "--short=12", "HEAD").strip()
    return (head + "+dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else head) or "unknown"
  except OSError:
    return "unknown"


def run_preset(spec: str, seed: int, workdir: Path, *, sets=(), resume=False) -> tuple[dict, str]:
  """Trains the preset (with `sets` after the seed's) in workdir: afresh, or with resume=True continuing the
  run there (a finished one is only evaluated; a run of another config is refused)."""
  sets = [f"trainer.seed={seed}", f"data.seed={seed}", "trainer.progress=false", *sets]
  cfg = config_lib.override(genrec.configs.get(spec), sets)
  cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, progress=False))
  if not resume:
    shutil.rmtree(workdir, ignore_errors=True)
  return pipeline.train(cfg, workdir, resume=resume), cfg.trainer.best_metric


def run_in_process(spec: str, seed: int, workdir: Path, *, sets=(), resume=False) -> tuple[dict, str]:
  """run_preset in a child process (its output in workdir's sibling seedS.log); the results come back through
  the results.json the run writes."""
  if not resume:
    shutil.rmtree(workdir, ignore_errors=True)
  workdir.parent.mkdir(parents=True, exist_ok=True)
  log = workdir.parent / f"{workdir.name}.log"
  flags = [*(["--set", *sets] if sets else []), *(["--resume"] if resume else [])]
  with log.open("a" if resume else "w") as out:
    done = subprocess.run(
      [sys.executable, __file__, "--run-one", spec, str(seed), str(workdir), *flags],
      stdout=out,
      stderr=subprocess.STDOUT,
    )
  if done.returncode:
    raise SystemExit(f"{spec} seed {seed} failed (exit {done.returncode}); its log: {log}")
  cfg = genrec.configs.get(spec)
  return json.loads((workdir / "results.json").read_text()), cfg.trainer.best_metric


def main(argv=None) -> int:
  p = argparse.ArgumentParser()
  p.add_argument("--presets", default="tiny", help="preset name every checked model has (tiny, ml100k)")
  p.add_argument("--models", default="", help="comma-separated (default: every model with that preset)")
  p.add_argument("--seeds", default="0")
  p.add_argument("--record", action="store_true", help="write the measured means as the expected values")
  p.add_argument("--tolerance", type=float, default=0.02, help="with --record: the tolerance written")
  p.add_argument(
    "--rel-tolerance", type=float, default=0.0, help="with --record: at least this fraction of each value (recon)"
  )
  p.add_argument("--json", help="write every run's results here (input of benchmarks/readme_tables.py)")
  p.add_argument("--workdir", default="", help="where the runs go (default: a temporary folder)")
  p.add_argument("--jobs", type=int, default=1, help="train up to this many runs at once (separate processes)")
  p.add_argument(
    "--resume", action="store_true", help="continue the runs already in --workdir (finished ones are only evaluated)"
  )
  p.add_argument(
    "--set", nargs="+", default=[], metavar="KEY=VALUE", help="an experiment on top of the preset (not with --record)"
  )
  p.add_argument("--run-one", nargs=3, metavar=("SPEC", "SEED", "WORKDIR"), help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.run_one:  # a child of --jobs
    spec, seed, workdir = args.run_one
    run_preset(spec, int(seed), Path(workdir), sets=args.set, resume=args.resume)
    return 0
  if args.jobs < 1:
    raise SystemExit(f"--jobs must be 1 or more, got {args.jobs}")
  if args.set and args.record:
    raise SystemExit("--set runs an experiment, not the preset: it cannot --record expected metrics")
  if args.resume and not args.workdir:
    raise SystemExit("--resume continues the runs in --workdir: name it")
  opts = dict(sets=args.set, resume=args.resume)
  seeds = [int(s) for s in args.seeds.split(",")]
  models = [m for m in args.models.split(",") if m] or [
    m for m in registry.list_models() if f"{m}:{args.presets}" in genrec.configs.list_configs()
  ]
  root = Path(args.workdir or tempfile.mkdtemp(prefix="genrec-check-"))
  command = "python benchmarks/check_presets.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
  rows, problems, dump = [], [], {}
  at = commit()
  done = {}
  if args.jobs > 1:
    work = [(f"{m}:{args.presets}", seed, root / m / f"seed{seed}") for m in models for seed in seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
      done = dict(zip([(s, seed) for s, seed, _ in work], pool.map(lambda w: run_in_process(*w, **opts), work)))
  for model in models:
    spec = f"{model}:{args.presets}"
    runs = []
    for seed in seeds:
      results, best_metric = done.get((spec, seed)) or run_preset(spec, seed, root / model / f"seed{seed}", **opts)
      runs.append(results)
    dump[spec] = {"runs": runs, "seeds": seeds, "command": command, "commit": at}
    if args.record:
      expected.record(
        model, args.presets, runs, best_metric=best_metric, seeds=seeds, tolerance=args.tolerance,
        rel_tolerance=args.rel_tolerance,
        command=command.replace(" --record", ""), commit=at, when=datetime.date.today().isoformat(),
      )  # fmt: skip
    try:
      recorded = expected.entry(model, args.presets)
    except ConfigError as e:
      problems.append(str(e))
      continue
    problems += expected.check(model, args.presets, runs)
    for name, spec_ in recorded["metrics"].items():
      got = expected.mean_of(runs, name)
      ok = abs(got - spec_["value"]) <= spec_["tolerance"]
      rows.append((spec, name, spec_["value"], got, spec_["tolerance"], "ok" if ok else "OUT"))
    print(f"{spec}: {len(runs)} seed(s) done", file=sys.stderr, flush=True)
  if args.json:
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(dump, indent=1, sort_keys=True))
  print(f"\nseeds {seeds}; expected values from genrec/configs/expected_metrics/; commit {at}")
  if args.set:
    print(f"an experiment, not the presets: --set {' '.join(args.set)}")
  print("| preset | metric | expected | measured | tolerance | |")
  print("|---|---|---|---|---|---|")
  for spec, name, want, got, tol, ok in rows:
    print(f"| {spec} | {name} | {want:.4f} | {got:.4f} | {tol:.4f} | {ok} |")
  for line in problems:
    print(f"OUT OF TOLERANCE: {line}" if "expected" in line else f"MISSING: {line}")
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
