"""Batch recommendations (`Run.recommend_all`, sharded fixed-size batches) against the one-user loop
(`Run.recommend` per user): users/s, as one table.

    python benchmarks/recommend_batch.py [--run DIR] [--preset sasrec:ml100k --set trainer.steps=200]
        [--batch-sizes 64 256 1024] [--loop-users 200] [--k 10]

Without --run it first trains the preset briefly into --workdir (the weights do not change the cost of a
search). The loop is timed on the first --loop-users users after one warm-up call, as `Run.recommend` (the
run's compiled search, one padded row per call); each batch size over every
user twice: the first pass includes compiling that shape, the second is steady state. Both paths give the same
items for the loop's users (checked).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time

import jax

import genrec
import genrec.configs
from genrec import config as config_lib
from genrec import pipeline


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--run", help="an existing run folder (else --preset is trained into --workdir)")
  ap.add_argument("--preset", default="sasrec:ml100k")
  ap.add_argument("--set", nargs="*", default=["trainer.steps=200", "trainer.eval_every=200"])
  ap.add_argument("--workdir", default="runs/bench-recommend-batch")
  ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
  ap.add_argument("--loop-users", type=int, default=200)
  ap.add_argument("--k", type=int, default=10)
  args = ap.parse_args()
  workdir = args.run
  if workdir is None:
    cfg = config_lib.override(genrec.configs.get(args.preset), args.set)
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, progress=False))
    shutil.rmtree(args.workdir, ignore_errors=True)
    t0 = time.time()
    pipeline.trainer(cfg, args.workdir, resume=False).run()
    print(f"trained {args.preset} ({' '.join(args.set)}) in {time.time() - t0:.0f} s", flush=True)
    workdir = args.workdir
  run = genrec.load(workdir)
  data = run.dataset()
  users = data.user_raw
  loop_users = users[: args.loop_users]

  run.recommend(loop_users[0], args.k)  # compile
  t0 = time.perf_counter()
  loop = [run.recommend(u, args.k) for u in loop_users]
  loop_rate = len(loop_users) / (time.perf_counter() - t0)

  rows = []
  for bs in args.batch_sizes:
    t0 = time.perf_counter()
    first = run.recommend_all(k=args.k, batch_size=bs)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = run.recommend_all(k=args.k, batch_size=bs)
    warm = time.perf_counter() - t0
    assert first == again
    for one, row in zip(loop, again):
      assert [r["item"] for r in one] == row["items"], f"batch {bs} differs from the loop for user {row['user']}"
    rows.append((bs, len(users) / cold, len(users) / warm))

  devices = jax.devices()
  print(
    f"\n{run.config.model_name}:{run.config.preset} on {data.name} ({data.num_users} users, {data.num_items} items),"
    f" top-{args.k}, {len(devices)} x {devices[0].platform} device(s)"
  )
  print("| path | batch | users/s (first pass, with compile) | users/s (steady) | vs loop |")
  print("|---|---|---|---|---|")
  print(f"| one-user loop (`Run.recommend`, {len(loop_users)} users) | 1 | - | {loop_rate:.1f} | 1.0x |")
  for bs, cold, warm in rows:
    print(f"| `Run.recommend_all` ({len(users)} users) | {bs} | {cold:.0f} | {warm:.0f} | {warm / loop_rate:.0f}x |")


if __name__ == "__main__":
  main()
