"""HSTU attention, plain vs blocked: forward+backward step time and compiled memory vs sequence length.

    python benchmarks/hstu_seq_scaling.py [--lengths 256 512 1024 2048 4096 8192] [--batch 1] [--block 256]

One HSTU layer stack (the model's `stack`, embeddings excluded) differentiated w.r.t. its parameters and inputs.
Memory is XLA's own account of the compiled program (`compiled.memory_analysis()`: temporaries + arguments +
outputs), so it is comparable across devices; the device is printed with the table.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models.hstu import HSTU, HSTUConfig


def compile_step(length, attention, args):
  cfg = HSTUConfig(
    num_items=100,
    max_len=length,
    dim=args.dim,
    num_layers=args.layers,
    num_heads=args.heads,
    qk_dim=args.head_dim,
    v_dim=args.head_dim,
    dropout=0.0,
    emb_dropout=0.0,
    attention=attention,
    block_size=min(args.block, length),
  )
  model = nnx.jit(lambda: HSTU(cfg, rngs=nnx.Rngs(0)))()
  model.eval()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(args.batch, length, args.dim)), jnp.float32)
  valid = jnp.ones((args.batch, length), bool)
  times = jnp.asarray(np.cumsum(rng.integers(0, 3600, (args.batch, length + 1)), axis=1), jnp.int32)

  def loss(params, x):
    model = nnx.merge(graphdef, params, rest)
    return jnp.square(model.stack(x, valid, times[:, 1:], times[:, :-1])).mean()

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  compiled = step.lower(params, x).compile()
  return compiled, (params, x)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--lengths", type=int, nargs="*", default=[256, 512, 1024, 2048, 4096, 8192])
  ap.add_argument("--batch", type=int, default=1)
  ap.add_argument("--block", type=int, default=256)
  ap.add_argument("--dim", type=int, default=64)
  ap.add_argument("--layers", type=int, default=2)
  ap.add_argument("--heads", type=int, default=2)
  ap.add_argument("--head-dim", type=int, default=32)
  ap.add_argument("--repeats", type=int, default=3)
  args = ap.parse_args()
  print(
    f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}); batch {args.batch}, "
    f"{args.layers} layers, dim {args.dim}, {args.heads} heads x {args.head_dim}, block {args.block}"
  )
  print("| length | attention | step (ms) | compiled memory (MiB) | temporaries (MiB) |")
  print("|---|---|---|---|---|")
  for length in args.lengths:
    for attention in ("plain", "blocked"):
      compiled, inputs = compile_step(length, attention, args)
      mem = compiled.memory_analysis()
      jax.block_until_ready(compiled(*inputs))
      t0 = time.perf_counter()
      for _ in range(args.repeats):
        jax.block_until_ready(compiled(*inputs))
      ms = (time.perf_counter() - t0) / args.repeats * 1e3
      total = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
      print(
        f"| {length} | {attention} | {ms:.1f} | {total / 2**20:.1f} | {mem.temp_size_in_bytes / 2**20:.1f} |",
        flush=True,
      )


if __name__ == "__main__":
  main()
