"""Execute, not estimate: train and evaluate SASRec with a catalogue of millions of items sharded over the
`tensor` axis, measuring per-device memory while it runs.

  python benchmarks/giant_catalogue.py                      # 2,000,000 items, 8 simulated CPU devices
  python benchmarks/giant_catalogue.py --items 4000000 --steps 8

One real `Trainer.run()` (full-softmax training steps, a validation, a checkpoint, the final valid/test
evaluation ranking every user's target among all items) on the synthetic planted-successor dataset. Memory per
device is read at run time from the arrays alive on each device (`jax.live_arrays()`, shard by shard), sampled
by a thread every 0.2 s while it runs; next to it the compiled step's own figure (`compiled.memory_analysis()`)
and the process's peak resident memory (all simulated devices share one host).
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import jax

jax.config.update("jax_num_cpu_devices", 8)  # only the CPU backend reads it: accelerators are not affected

import genrec.configs  # noqa: E402
from genrec import config as config_lib  # noqa: E402
from genrec.train import sharding  # noqa: E402
from genrec.train.memory import train_step_memory  # noqa: E402
from genrec.train.trainer import Trainer  # noqa: E402

MiB = 2**20


def live_bytes_per_device() -> dict:
  """Bytes of every live array's shards, per device (what is resident right now, not an estimate)."""
  out = collections.Counter()
  for array in jax.live_arrays():
    try:
      for shard in array.addressable_shards:
        out[shard.device] += shard.data.nbytes
    except RuntimeError:  # donated or deleted between listing and reading
      continue
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--items", type=int, default=2_000_000)
  p.add_argument("--steps", type=int, default=4)
  p.add_argument("--devices", type=int, default=8)
  p.add_argument("--dim", type=int, default=32)
  args = p.parse_args()
  n = args.devices
  if len(jax.devices()) < n:
    raise SystemExit(f"{n} devices asked, {len(jax.devices())} found")
  cfg = config_lib.override(
    genrec.configs.get("sasrec:tiny"),
    [
      f"data.synthetic_items={args.items}",
      "data.synthetic_users=256",
      "data.synthetic_length=12",
      "data.max_len=8",
      f"model.dim={args.dim}",
      f"model.mlp_dim={2 * args.dim}",
      "trainer.batch_size=64",
      "eval.batch_size=64",
      f"trainer.steps={args.steps}",
      f"trainer.eval_every={args.steps}",
      f"trainer.checkpoint_every={args.steps}",
      "trainer.log_every=1",
      "trainer.progress=false",
      "mesh.data=1",
      f"mesh.tensor={n}",
    ],
  )
  mesh = sharding.make_mesh(cfg.mesh, jax.devices()[:n])
  print(f"devices: {n} x {jax.devices()[0].device_kind} ({jax.default_backend()}); mesh tensor={n}")
  estimate = train_step_memory(cfg, mesh)
  folder = tempfile.mkdtemp(prefix="genrec-giant-")
  peaks, done = collections.Counter(), threading.Event()

  def sample():
    while not done.wait(0.2):
      for device, b in live_bytes_per_device().items():
        peaks[device] = max(peaks[device], b)

  sampler = threading.Thread(target=sample, daemon=True)
  try:
    t0 = time.time()
    trainer = Trainer(cfg, folder, mesh=mesh, resume=False)
    setup = time.time() - t0
    table = trainer.state["params"]["item_emb"]["embedding"]
    rows_per_device = {s.data.shape[0] for s in table.addressable_shards}
    table_mib = max(s.data.nbytes for s in table.addressable_shards) / MiB
    sampler.start()
    t1 = time.time()
    results = trainer.run()
    done.set()
    sampler.join()
    wall = time.time() - t0
    after = live_bytes_per_device()
    rows = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in rows if r["split"] == "train"]
  finally:
    done.set()
    shutil.rmtree(folder, ignore_errors=True)
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
  print(
    f"\nSASRec d={args.dim}, L=8, batch 64, full softmax over {args.items:,} items "
    f"(table padded to {table.shape[0]:,} rows), {args.steps} steps + validation + final valid/test evaluation"
  )
  print("| measured | value |")
  print("|---|---|")
  print(
    f"| item-table rows per device | {', '.join(f'{r:,}' for r in sorted(rows_per_device))} of {table.shape[0]:,} |"
  )
  print(f"| item-table MiB per device | {table_mib:.0f} |")
  print(
    f"| live MiB per device, max during run() (params, Adam state, batch, eval) | {max(peaks.values()) / MiB:.0f} "
    f"(least loaded device {min(peaks.values()) / MiB:.0f}) |"
  )
  print(f"| live MiB per device after evaluation | {max(after.values()) / MiB:.0f} |")
  print(f"| compiled train step, peak MiB per device (memory_analysis) | {estimate['peak'] / MiB:.0f} |")
  print(f"| process peak RSS GiB (all {n} simulated devices share this host) | {rss:.1f} |")
  print(f"| setup s (data, init, compile) | {setup:.0f} |")
  print(f"| s per step after the first | {(times[-1] - times[0]) / max(len(times) - 1, 1):.2f} |")
  print(f"| run() s (steps, validation, checkpoint, final evaluation) | {time.time() - t1:.0f} |")
  print(f"| total wall s | {wall:.0f} |")
  print(
    f"| test NDCG@10 / Recall@10 (planted successor) | {results['test']['ndcg@10']:.4f} / "
    f"{results['test']['recall@10']:.4f} |"
  )


if __name__ == "__main__":
  main()
