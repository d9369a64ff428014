"""Scale-out figures: steps/s and per-device memory over meshes of 1, 2, 4, 8 devices; the 10M-item memory
table; time to resume after kill -9.

  python benchmarks/scaling.py                 # 8 simulated CPU devices (or the accelerators JAX finds)
  python benchmarks/scaling.py --only memory   # just the 10M-item table (abstract shapes, nothing allocated)

On a CPU host the devices are simulated (`jax_num_cpu_devices`): steps/s then measures overhead, not
speed-up (all "devices" share the host's cores). Memory figures come from the compiled step
(`compiled.memory_analysis()`), so they hold on any host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_num_cpu_devices", 8)  # only the CPU backend reads it: accelerators are not affected

import genrec.configs  # noqa: E402
from genrec import config as config_lib  # noqa: E402
from genrec import pipeline  # noqa: E402
from genrec.train import sharding  # noqa: E402
from genrec.train.memory import train_step_memory  # noqa: E402

QUIET = [
  "trainer.progress=false",
  "trainer.eval_every=100000",
  "trainer.checkpoint_every=100000",
  "trainer.log_every=100000",
]
MODELS = {
  "sasrec tiny": ("sasrec:tiny", []),
  "sasrec medium": (
    "sasrec:tiny",
    [
      "model.dim=128",
      "model.num_layers=2",
      "model.mlp_dim=512",
      "data.max_len=50",
      "data.synthetic_items=2000",
      "data.synthetic_users=2048",
      "data.synthetic_length=60",
      "trainer.batch_size=256",
    ],
  ),
  "tiger tiny": ("tiger:tiny", []),
  "tiger medium": (
    "tiger:tiny",
    [
      "model.dim=128",
      "model.enc_layers=2",
      "model.dec_layers=2",
      "model.num_heads=4",
      "model.head_dim=32",
      "model.mlp_dim=512",
      "data.max_len=20",
      "trainer.batch_size=256",
    ],
  ),
}
MB = 2**20


def _cfg(spec, sets, n, axis):
  mesh_sets = ["mesh.data=1", f"mesh.{axis}={n}"] if axis != "data" else [f"mesh.data={n}"]
  return config_lib.override(genrec.configs.get(spec), [*QUIET, *sets, *mesh_sets])


def steps_per_second(cfg, n, steps=10) -> float:
  mesh = sharding.make_mesh(cfg.mesh, jax.devices()[:n])
  folder = tempfile.mkdtemp(prefix="genrec-scaling-")
  try:
    trainer = pipeline.trainer(cfg, folder, mesh=mesh, resume=False)  # TIGER's tokenizer stage first
    trainer.run(stop_at=2)  # compile and warm up
    jax.block_until_ready(trainer.state["params"])
    t = time.perf_counter()
    trainer.run(stop_at=2 + steps)
    jax.block_until_ready(trainer.state["params"])
    return steps / (time.perf_counter() - t)
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def mesh_table(counts) -> None:
  print("| model | mesh | devices | steps/s | peak MiB/device | params+opt MiB/device |")
  print("|---|---|---|---|---|---|")
  for name, (spec, sets) in MODELS.items():
    for axis in ("data", "fsdp"):
      for n in counts:
        cfg = _cfg(spec, sets, n, axis)
        mem = train_step_memory(cfg, sharding.make_mesh(cfg.mesh, jax.devices()[:n]))
        sps = steps_per_second(cfg, n)
        print(
          f"| {name} | {axis}={n} | {n} | {sps:.2f} | {mem['peak'] / MB:.1f} | {mem['arguments'] / MB:.1f} |",
          flush=True,
        )


def memory_table(counts, items=10_000_000) -> None:
  print(f"\nSASRec (d=64, L=8, batch 32, full softmax) with a {items:,}-item table sharded over `tensor`:")
  print("| devices | table+params MiB/device | arguments MiB | temporaries MiB | peak MiB/device | vs 1 device |")
  print("|---|---|---|---|---|---|")
  base = None
  for n in counts:
    cfg = config_lib.override(
      genrec.configs.get("sasrec:tiny"),
      [
        f"model.num_items={items}",
        "model.dim=64",
        "data.max_len=8",
        "trainer.batch_size=32",
        "mesh.data=1",
        f"mesh.tensor={n}",
      ],
    )
    m = train_step_memory(cfg, sharding.make_mesh(cfg.mesh, jax.devices()[:n]))
    base = base or m["peak"]
    print(
      f"| {n} | {m['parameters'] / MB:.0f} | {m['arguments'] / MB:.0f} | {m['temporaries'] / MB:.0f} | "
      f"{m['peak'] / MB:.0f} | {m['peak'] / base:.3f} |",
      flush=True,
    )


def resume_time(trials=3) -> None:
  """Seconds from relaunching a SIGKILLed `genrec train` to its first new training step."""
  print("\nkill -9, then the same command: seconds until the first new step (sasrec:tiny, 8 devices)")
  sets = [
    "trainer.steps=400",
    "trainer.checkpoint_every=5",
    "trainer.log_every=1",
    "trainer.progress=false",
    "trainer.eval_every=100000",
  ]
  env = {**os.environ, "TQDM_DISABLE": "1", "JAX_PLATFORMS": "cpu"}
  for trial in range(trials):
    work = Path(tempfile.mkdtemp(prefix="genrec-kill-"))
    cmd = [
      sys.executable,
      "-m",
      "genrec.cli",
      "train",
      "sasrec:tiny",
      "--workdir",
      str(work),
      "--local-devices",
      "8",
      "--set",
      *sets,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (work / "checkpoints" / "10").is_dir():
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = max(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    t = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = work / "metrics.jsonl"
    while True:
      rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
      new = [r for r in rows if r["split"] == "train" and r["time"] > t]
      if new:
        print(
          f"trial {trial}: resumed from step {done}, first new step {new[0]['step']} after "
          f"{new[0]['time'] - t:.1f} s (process start, import, compile, restore)",
          flush=True,
        )
        break
      time.sleep(0.05)
    proc.kill()
    proc.wait()
    shutil.rmtree(work, ignore_errors=True)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--only", choices=("mesh", "memory", "resume"))
  args = p.parse_args()
  counts = [n for n in (1, 2, 4, 8) if n <= len(jax.devices())]
  print(f"devices: {len(jax.devices())} x {jax.devices()[0].device_kind} ({jax.default_backend()})")
  if args.only in (None, "mesh"):
    mesh_table(counts)
  if args.only in (None, "memory"):
    memory_table(counts)
  if args.only in (None, "resume"):
    resume_time()


if __name__ == "__main__":
  main()
