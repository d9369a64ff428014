"""The `genrec` command. Thin: parse, call the library, print.

genrec train MODEL:PRESET|CONFIG.json --workdir DIR [--set key=value ...] [--import MODULE] [--fresh] [--stop-at STEP]
             [--init-from RUN]
             [--coordinator HOST:PORT --num-processes N --process-id I | --distributed auto] [--local-devices N]
genrec eval DIR [--set eval.candidates=all ...]
genrec recommend DIR --user ID [--k 10] | --users all|FILE [--out FILE.jsonl|FILE.parquet] [--quiet]
genrec export DIR --out OUT [--k 10]
genrec plot DIR [--out FILE.png]
genrec export-ids DIR [--out FILE.csv|FILE.json]
genrec export-embeddings DIR [--out FILE.npy]
genrec add-items DIR ITEMS.csv [--json]
genrec datasets list | prepare NAME [--data-dir DIR] [--images]
genrec models
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from genrec import locks


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="genrec", description="Generative recommendation in JAX/Flax.")
  p.add_argument(
    "--import",
    dest="imports",
    action="append",
    default=[],
    metavar="MODULE",
    help="import a module that registers models (repeatable)",
  )
  sub = p.add_subparsers(dest="command", required=True)

  t = sub.add_parser("train", help="train MODEL:PRESET into a run folder (resumes if one exists)")
  t.add_argument(
    "spec",
    help="MODEL:PRESET, e.g. sasrec:ml100k (see `genrec models`), or a config FILE.json "
    '(every key, or a "preset" whose values fill the keys it leaves out)',
  )
  t.add_argument("--workdir", required=True)
  t.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
  t.add_argument("--fresh", action="store_true", help="delete the workdir's checkpoints and start over")
  t.add_argument(
    "--init-from",
    metavar="RUN",
    help="start from RUN's parameters, a folder or a URI (https://, hf://ORG/NAME@REV, gs://); fresh optimizer; "
    "the catalogue may grow: item rows are matched by item id",
  )
  t.add_argument("--init-which", choices=("best", "latest"), default="best", help="which checkpoint of RUN")
  t.add_argument(
    "--stop-at",
    type=int,
    metavar="STEP",
    help="pause after STEP with a checkpoint (the same command without it resumes)",
  )
  t.add_argument("--import", dest="imports_sub", action="append", default=[], metavar="MODULE")
  _launch_flags(t)

  e = sub.add_parser("eval", help="recompute a run's metrics from its checkpoint")
  e.add_argument("workdir")
  e.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="eval.KEY=VALUE")
  e.add_argument("--which", choices=("best", "latest"), default="best")
  _load_flags(e)
  e.add_argument("--import", dest="imports_sub", action="append", default=[], metavar="MODULE")

  r = sub.add_parser("recommend", help="top-k unseen items for a user, or for many (--users)")
  r.add_argument("workdir")
  who = r.add_mutually_exclusive_group(required=True)
  who.add_argument("--user", help="user id as in the dataset's files")
  who.add_argument("--users", metavar="all|FILE", help="every user, or a file of user ids (one a line)")
  r.add_argument("--k", type=int, default=10)
  r.add_argument("--json", action="store_true")
  _load_flags(r)
  r.add_argument("--out", metavar="FILE.jsonl|FILE.parquet", help="with --users: where to write (default stdout)")
  r.add_argument("--batch-size", type=int, default=256, help="with --users: users per compiled batch")
  r.add_argument("--quiet", action="store_true", help="no progress bar")
  r.add_argument("--import", dest="imports_sub", action="append", default=[], metavar="MODULE")

  x = sub.add_parser("export-ids", help="write a run's item -> semantic ID table (CSV or JSON) with statistics")
  x.add_argument("workdir")
  x.add_argument("--out", help="FILE.csv or FILE.json (default: DIR/semantic_ids.csv)")
  x.add_argument("--import", dest="imports_sub", action="append", default=[], metavar="MODULE")

  xe = sub.add_parser("export-embeddings", help="write a run's item embeddings [items+1, D] as .npy + JSON sidecar")
  xe.add_argument("workdir")
  xe.add_argument("--out", help="FILE.npy (default: DIR/item_embeddings.npy)")
  xe.add_argument("--import", dest="imports_sub", action="append", default=[], metavar="MODULE")

  xr = sub.add_parser(
    "export", help="write a run's recommender as a jax.export artifact (loads with jax + numpy alone)"
  )
  xr.add_argument("workdir")
  xr.add_argument("--out", required=True, metavar="DIR", help="folder for recommend.jax, params.npz, manifest.json")
  xr.add_argument("--k", type=int, default=10, help="items the exported function returns per user")
  xr.add_argument("--which", choices=("best", "latest"), default="best")
  xr.add_argument("--import", dest="imports_sub", action="append", default=[], metavar="MODULE")

  pl = sub.add_parser("plot", help="draw a run's learning curves (train loss, valid metric) as a PNG")
  pl.add_argument("workdir")
  pl.add_argument("--out", metavar="FILE.png", help="default: DIR/curves.png")

  a = sub.add_parser(
    "add-items",
    help="add new items (CSV: item_id, title/text, genres, image) to a trained run "
    "without retraining it: an overlay in DIR/artifacts/added_items.json",
  )
  a.add_argument("workdir")
  a.add_argument("items_csv")
  a.add_argument("--json", action="store_true")
  a.add_argument("--import", dest="imports_sub", action="append", default=[], metavar="MODULE")

  pb = sub.add_parser(
    "publish",
    help="write a self-contained folder of a finished run (best checkpoint, config, artifacts, model card, "
    "sha256 manifest) that genrec.load / genrec eval read from a folder or a URI",
  )
  pb.add_argument("workdir")
  pb.add_argument("out")
  pb.add_argument("--step", type=int, help="a step kept in RUN/best (default: the newest)")

  d = sub.add_parser("datasets", help="list or prepare datasets")
  d.add_argument("action", choices=("list", "prepare"))
  d.add_argument("name", nargs="?")
  d.add_argument("--data-dir", default="")
  d.add_argument("--images", action="store_true", help="amazon-*: also download the item images into the cache")

  sub.add_parser("models", help="list registered models and presets")
  return p


def _load_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument(
    "--allow-unverified",
    action="store_true",
    help="load a checkpoint that has no manifest (its files cannot be checked against what was written)",
  )
  p.add_argument(
    "--data",
    metavar="DATASET",
    help="read this data.dataset (e.g. atomic:DIR/NAME) instead of the one the run's config names",
  )


def _launch_flags(p: argparse.ArgumentParser) -> None:
  g = p.add_argument_group("multi-process launch (see README: several hosts)")
  g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 (env GENREC_COORDINATOR)")
  g.add_argument("--num-processes", type=int, help="processes in the job (env GENREC_NUM_PROCESSES)")
  g.add_argument("--process-id", type=int, help="this process, 0..N-1 (env GENREC_PROCESS_ID)")
  g.add_argument("--distributed", choices=("auto",), help="detect the cluster: SLURM, Open MPI, TPU pod")
  g.add_argument(
    "--local-devices",
    type=int,
    default=0,
    metavar="N",
    help="simulate N devices on a CPU host (testing meshes without accelerators)",
  )


def _start_jax(args) -> None:
  from genrec.train import distributed

  launch = distributed.from_args(
    args.coordinator,
    args.num_processes,
    args.process_id,
    auto=args.distributed == "auto",
    local_devices=args.local_devices,
  )
  distributed.initialize(launch)


def _train(args) -> int:
  from genrec import config as config_lib
  from genrec.files import remove, run_folder

  workdir = run_folder(args.workdir)  # local, or gs://; another scheme is refused before any work
  cfg = config_lib.override(_spec_config(args.spec), args.overrides)
  if args.stop_at is not None and args.stop_at < 1:
    raise config_lib.ConfigError(f"--stop-at must be a step >= 1, got {args.stop_at}")
  _start_jax(args)
  import jax

  if workdir.exists() and not workdir.is_dir():
    raise config_lib.ConfigError(f"--workdir {workdir} is a file, not a folder; give a folder (it is created)")
  if not args.fresh:
    return _train_in(args, cfg, workdir)
  # Never delete a live run: --fresh refuses while another process holds the workdir, and holds it meanwhile
  # (process 0 holds it for the whole job, as the trainer does).
  lock = locks.hold(workdir, f"genrec train {args.spec} --fresh", wait=False)
  with lock if jax.process_index() == 0 else contextlib.nullcontext():
    for sub in ("checkpoints", "best", "results.json", "metrics.jsonl", "tensorboard"):
      remove(workdir / sub)
    return _train_in(args, cfg, workdir)


def _train_in(args, cfg, workdir: Path) -> int:
  from genrec import pipeline
  from genrec.train.report import results_table

  print(f"training {args.spec} in {workdir}", file=sys.stderr)
  trainer = pipeline.trainer(cfg, workdir, init_from=args.init_from, init_which=args.init_which)
  if trainer.init_info is not None:
    info = trainer.init_info
    grown = f"; {info['items_carried']} items carried over, {info['items_new']} new" if "items_new" in info else ""
    print(f"warm start from {info['run']} ({info['which']}, step {info['step']}){grown}", file=sys.stderr)
  results = trainer.run(stop_at=args.stop_at)
  import jax

  if jax.process_index() != 0:  # one report per job
    return 0
  if results is None:
    print(f"stopped before trainer.steps; run the same command to resume from {workdir}", file=sys.stderr)
    return 0
  print(results_table(results))
  print(f"\nresults: {workdir / 'results.json'}")
  return 0


def _publish(args) -> int:
  from genrec import hub

  out = hub.publish(args.workdir, args.out, step=args.step)
  manifest = hub.read_manifest(out, str(out))
  size = sum(e["size"] for e in manifest["files"].values())
  print(
    f"published {args.workdir} (step {manifest['step']}) to {out}: {len(manifest['files'])} files, "
    f"{size / 2**20:.1f} MiB"
  )
  print("serve the folder over https, push it to a Hub repo or copy it to gs://, then: genrec eval URI")
  return 0


def _spec_config(spec: str):
  """MODEL:PRESET, or a config file (genrec.config.from_json: every key, or a preset filling the rest)."""
  import genrec.configs
  from genrec import config as config_lib

  if not spec.endswith(".json"):
    return genrec.configs.get(spec)
  path = Path(spec)
  if not path.is_file():
    raise config_lib.ConfigError(f"config file {path} does not exist")
  try:
    return genrec.configs.from_json(path.read_text(encoding="utf-8"))
  except config_lib.ConfigError as e:
    raise config_lib.ConfigError(f"{path}: {e}") from None


def _eval(args) -> int:
  import genrec
  from genrec import config as config_lib
  from genrec.api import evaluate_run, record_eval
  from genrec.config import ConfigError
  from genrec.train.report import results_table

  run = genrec.load(
    args.workdir, which=args.which, added_items=False, allow_unverified=args.allow_unverified, data=args.data
  )
  bad = [o for o in args.overrides if not o.startswith("eval.")]
  if bad:
    raise ConfigError(f"genrec eval only takes eval.* overrides, got {bad}")
  cfg = config_lib.override(run.config, args.overrides)
  results = evaluate_run(run, eval_cfg=cfg.eval, write=False)
  print(results_table(results))
  print(record_eval(run, cfg, results)[1], file=sys.stderr)
  return 0


def _recommend(args) -> int:
  import genrec

  if args.users is not None:
    return _recommend_many(args)
  run = genrec.load(args.workdir, allow_unverified=args.allow_unverified, data=args.data)
  recs = run.recommend(args.user, args.k)
  if args.json:
    print(json.dumps(recs, indent=2))
    return 0
  print(f"top {args.k} for user {args.user} ({run.config.model_name}:{run.config.preset}, step {run.step}):")
  for rank, r in enumerate(recs, 1):
    print(f"{rank:3d}. {r['title'] or '(untitled)'}  [item {r['item']}]  score={r['score']:.3f}")
  return 0


def _recommend_many(args) -> int:
  import genrec
  from genrec.serve import batch as batch_lib

  out = batch_lib.check_output(args.out) if args.out else None  # refused before loading anything
  run = genrec.load(args.workdir, allow_unverified=args.allow_unverified, data=args.data)
  data = run.dataset()
  users = range(data.num_users) if args.users == "all" else batch_lib.read_user_file(args.users, data)
  progress = not args.quiet and sys.stderr.isatty()
  rows = batch_lib.recommend_rows(run, users, args.k, batch_size=args.batch_size, progress=progress)
  if out is None:
    for row in rows:
      print(json.dumps(row))
    return 0
  batch_lib.write_rows(out, rows)
  print(f"wrote {len(users)} users' top {args.k} to {out}", file=sys.stderr)
  return 0


def _export_ids(args) -> int:
  from genrec.families.semantic_ids import export_semantic_ids

  out = export_semantic_ids(args.workdir, args.out)
  print(f"wrote {out}")
  return 0


def _export_embeddings(args) -> int:
  from genrec.families.content.export import export_embeddings

  out = export_embeddings(args.workdir, args.out)
  print(f"wrote {out} and {out.with_suffix('.json')}")
  return 0


def _export(args) -> int:
  import genrec
  from genrec.serve.export import export_run

  out = export_run(genrec.load(args.workdir, which=args.which), args.out, k=args.k)
  manifest = json.loads((out / "manifest.json").read_text())
  print(f"wrote {out}/recommend.jax, params.npz, manifest.json (batch {manifest['batch']}, top {args.k})")
  return 0


def _plot(args) -> int:
  from genrec.train.plot import plot_run

  print(f"wrote {plot_run(args.workdir, args.out)}")
  return 0


def _add_items(args) -> int:
  from genrec.api import add_items

  summary = add_items(args.workdir, args.items_csv, progress=True)
  if args.json:
    print(json.dumps(summary, indent=2))
    return 0
  for a in summary["added"]:
    codes = f"  codes={tuple(a['codes'])}" if "codes" in a else ""
    print(f"item {a['item']} -> id {a['id']}  {a['title']}{codes}")
  skipped = (
    f"; {summary['images_skipped']} image(s) did not decode and were skipped" if summary["images_skipped"] else ""
  )
  print(
    f"added {len(summary['added'])} items ({summary['total']} in all, overlay revision {summary['revision']}) to "
    f"{args.workdir}{skipped}"
  )
  return 0


def _datasets(args) -> int:
  from genrec.data import movielens
  from genrec.data.atomic import find_recbole_dataset

  if args.action == "list":
    here = find_recbole_dataset("ml-100k")
    print(f"ml-100k   offline copy: {here or 'not installed (pip install --no-deps recbole==1.2.1)'}")
    for name in ("ml-100k", "ml-1m", "ml-20m"):
      print(f"{name:9s} TFDS builder (downloads from GroupLens): genrec datasets prepare {name}")
    for name in ("amazon-beauty", "amazon-sports", "amazon-toys"):
      print(f"{name} TFDS builder (Amazon 2014 5-core + metadata from UCSD): genrec datasets prepare {name} [--images]")
    print("synthetic planted-structure generator (tests)")
    print("atomic:DIR/NAME  any RecBole atomic-file dataset")
    return 0
  if not args.name:
    from genrec.config import ConfigError

    raise ConfigError("datasets prepare needs a NAME: one of ml-100k, ml-1m, ml-20m")
  if args.name.startswith("amazon-"):
    from genrec.data import amazon

    amazon.prepare(args.name, args.data_dir, images=args.images)
    return 0
  if args.images:
    raise ValueError(f"--images applies to the amazon-* datasets; {args.name} has no item images")
  movielens.prepare(args.name, args.data_dir)
  return 0


def _models(args) -> int:
  import genrec

  for name in genrec.list_models():
    print(name)
  print("\npresets: " + ", ".join(genrec.list_configs()))
  return 0


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  from genrec import registry

  handler = {
    "train": _train,
    "eval": _eval,
    "recommend": _recommend,
    "datasets": _datasets,
    "models": _models,
    "export-ids": _export_ids,
    "export-embeddings": _export_embeddings,
    "export": _export,
    "plot": _plot,
    "add-items": _add_items,
    "publish": _publish,
  }[args.command]
  try:
    for module in args.imports + getattr(args, "imports_sub", []):
      registry.import_module(module)
    return handler(args)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
  except (ValueError, KeyError, FileNotFoundError, RuntimeError, ImportError, FloatingPointError) as e:
    if "GENREC_TRACEBACK" in __import__("os").environ:
      raise
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"genrec {args.command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
