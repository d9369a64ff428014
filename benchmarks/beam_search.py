"""Constrained beam search: genrec's batched, jitted search over dense prefix tables versus a Python-trie reference.

    python benchmarks/beam_search.py [--quick] [--sizes 10000 100000 1000000]

Prints two markdown tables:
1. users/s at beam 20, top-10, for batch sizes 1/64/256 (Tiger.recommend under jax.jit) next to a straightforward
   reference written here: one user at a time, a Python beam loop over a nested-dict trie of the valid codes,
   calling the same model's decoder one (jitted) step at a time. Both give the same top-10 (checked). The
   encoder's share of each is timed too, so the speed-up of the decoder + search alone can be read off.
2. per synthetic catalogue (10k / 100k / 1M items): decode latency of one batch of 64 users, bytes of genrec's
   dense constraint tables and of the Python trie (tracemalloc), and their build times. --quick: 10k only.

The catalogue is synthetic: uniform random codes, 3 levels x 64, made unique by TIGER's collision digit
(genrec.models.semantic_ids.dedup_codes); the model is a small, untrained TIGER (its weights do not change the
cost of the search). No already-seen filter unless a row says so.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models.semantic_ids import dedup_codes
from genrec.models.tiger import Tiger, TigerConfig

LEVELS, CODES = 3, 64  # semantic-ID levels x codes; + 1 collision digit
BEAM, TOPK, HIST = 20, 10, 20  # beam size, items returned, history items per user
ROUNDS = 3  # the speed table's rounds (median per cell)
MODEL = dict(dim=64, enc_layers=1, dec_layers=1, num_heads=4, head_dim=16, mlp_dim=256, num_user_buckets=2000)


def synthetic_codes(num_items: int, seed: int = 0) -> np.ndarray:
  """[N, LEVELS + 1] unique code tuples: random codes plus the collision digit."""
  rng = np.random.default_rng(seed)
  return dedup_codes(rng.integers(0, CODES, (num_items, LEVELS)), codebook_size=CODES, extra_size=CODES)


def make_model(codes: np.ndarray) -> tuple[Tiger, float]:
  """A TIGER sized for the codes, its tables built (seconds spent in set_item_codes returned)."""
  cfg = TigerConfig(
    num_items=len(codes),
    code_levels=codes.shape[1],
    codebook_size=CODES,
    dropout=0.0,
    max_len=HIST,
    beam_size=BEAM,
    **MODEL,
  )
  model = nnx.jit(lambda: Tiger(cfg, rngs=nnx.Rngs(params=0, dropout=1)))()
  t0 = time.perf_counter()
  model.set_item_codes(codes)
  jax.block_until_ready(model.tables())
  build_s = time.perf_counter() - t0
  model.eval()
  return model, build_s


def table_bytes(model: Tiger) -> int:
  return sum(int(a.nbytes) for group in model.tables() for a in group)


def users(num_items: int, count: int, seed: int = 1) -> dict:
  rng = np.random.default_rng(seed)
  return {
    "history": rng.integers(1, num_items + 1, (count, HIST)).astype(np.int32),
    "user": rng.integers(0, 10**6, count).astype(np.int32),
  }


# ---- genrec: Tiger.recommend, batched and jit-compiled ---------------------------------------------------------


def genrec_recommender(model: Tiger):
  graphdef, state = nnx.split(model)

  @jax.jit
  def recommend(state, batch):
    return nnx.merge(graphdef, state).recommend(batch, TOPK)

  return lambda batch: recommend(state, batch)


def genrec_encoder(model: Tiger):
  """Only the encoder part of recommend (encoder + cross-attention keys/values), to split the time."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def encode(state, batch):
    m = nnx.merge(graphdef, state)
    return m.start_decoding(*m.encode_batch(batch))

  return lambda batch: encode(state, batch)


# ---- the reference: one user at a time, a Python dict trie, a Python beam loop ---------------------------------


def build_trie(codes: np.ndarray) -> dict:
  """Nested dicts code -> child; the last level maps the collision digit to the item id (1-based)."""
  root: dict = {}
  for item, row in enumerate(codes.tolist(), start=1):
    node = root
    for code in row[:-1]:
      node = node.setdefault(code, {})
    node[row[-1]] = item
  return root


def trie_memory(codes: np.ndarray) -> tuple[dict, int, float]:
  """(trie, bytes allocated while building it as traced by tracemalloc, build seconds without tracing)."""
  t0 = time.perf_counter()
  build_trie(codes)
  build_s = time.perf_counter() - t0
  tracemalloc.start()
  trie = build_trie(codes)
  size = tracemalloc.get_traced_memory()[0]
  tracemalloc.stop()
  return trie, size, build_s


def reference_recommender(model: Tiger, trie: dict):
  """recommend(history [L], user []) -> (top items, scores) for one user, the beam kept in Python lists."""
  graphdef, state = nnx.split(model)
  levels, width = model.cfg.code_levels, max(BEAM, TOPK)

  @jax.jit
  def encode(state, history_1xL, user_1):
    m = nnx.merge(graphdef, state)
    return m.start_decoding(*m.encode_batch({"history": history_1xL, "user": user_1}))

  @functools.partial(jax.jit, static_argnums=1)
  def step(state, level, prev_W, parent_W, cache, context):
    m = nnx.merge(graphdef, state)
    cache = jax.tree.map(lambda x: x[parent_W], cache)  # reorder the KV cache to the surviving beams
    return m.decode_step(level, prev_W, cache, context)

  empty_cache = model.init_cache(width)
  zeros = np.zeros(width, np.int32)

  def recommend(history_L, user):
    context = encode(state, history_L[None], user[None])
    cache, prev, parent = empty_cache, zeros, zeros
    beams = [(0.0, trie)]  # (score, trie node); codes not needed
    for level in range(levels):
      log_probs, cache = step(state, level, prev, parent, cache, context)
      rows = np.asarray(log_probs).tolist()  # [W][K]
      cand = []
      for b, (score, node) in enumerate(beams):
        row = rows[b]
        for code, child in node.items():
          cand.append((score + row[code], b, code, child))
      cand.sort(key=lambda c: -c[0])
      cand = cand[:width]
      beams = [(s, child) for s, _, _, child in cand]
      parent = np.array([c[1] for c in cand] + [0] * (width - len(cand)), np.int32)
      prev = np.array([c[2] for c in cand] + [0] * (width - len(cand)), np.int32)
    return [node for _, node in beams[:TOPK]], [s for s, _ in beams[:TOPK]]

  recommend.encode = lambda history_L, user: jax.block_until_ready(encode(state, history_L[None], user[None]))
  return recommend


# ---- timing ----------------------------------------------------------------------------------------------------


def median_seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def time_genrec(recommend, batch: dict, calls: int, repeats: int) -> float:
  """Median seconds per call (after a warm-up call that compiles)."""
  batch = jax.device_put(batch)
  jax.block_until_ready(recommend(batch))
  return median_seconds(lambda: [jax.block_until_ready(recommend(batch)) for _ in range(calls)], repeats) / calls


def time_reference(recommend, batch: dict, repeats: int) -> float:
  """Median seconds for all the batch's users, one after another (after a warm-up user)."""
  hist = [jax.device_put(h) for h in batch["history"]]
  user = [jax.device_put(u) for u in batch["user"]]
  recommend(hist[0], user[0])
  return median_seconds(lambda: [recommend(h, u) for h, u in zip(hist, user)], repeats)


def agreement(genrec_items, reference, batch) -> tuple[int, int]:
  """(users whose top-10 lists are identical, users)."""
  got = np.asarray(genrec_items)
  same = sum(
    reference(jnp.asarray(h), jnp.asarray(u))[0] == got[i].tolist()
    for i, (h, u) in enumerate(zip(batch["history"], batch["user"]))
  )
  return int(same), len(got)


def fmt_bytes(n: float) -> str:
  for unit in ("B", "KB", "MB", "GB"):
    if n < 1024 or unit == "GB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024


def speed_table(num_items: int) -> None:
  codes = synthetic_codes(num_items)
  model, _ = make_model(codes)
  trie, _, _ = trie_memory(codes)
  params = sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  print(
    f"\nTIGER dim {MODEL['dim']}, {MODEL['enc_layers']}+{MODEL['dec_layers']} layers, {MODEL['num_heads']} heads x "
    f"{MODEL['head_dim']}, FFN {MODEL['mlp_dim']}: {params:,} parameters (untrained). Catalogue: {num_items:,} "
    f"items, {LEVELS} x {CODES} random codes + collision digit (max {int(codes[:, -1].max())}); history "
    f"{HIST} items ({1 + HIST * codes.shape[1]} encoder tokens); beam {BEAM}, top-{TOPK}; "
    f"{jax.devices()[0].platform}, {os.cpu_count()} cores; each cell the median of {ROUNDS} rounds."
  )
  pool = users(num_items, 256)
  genrec = genrec_recommender(model)
  reference = reference_recommender(model, trie)
  ref_batch = {k: v[:64] for k, v in pool.items()}
  encoder = genrec_encoder(model)
  plans = {1: (30, 5), 64: (5, 5), 256: (3, 5)}  # batch: (calls per repeat, repeats)
  seen_batch = dict(pool, seen=pool["history"])  # the history as already-seen items
  # Every row is timed once per round, the rounds one after another, and each cell is the median over the
  # rounds: a slow spell of the machine then shifts all rows of one round, not the reference alone.
  rounds = []
  for _ in range(ROUNDS):
    cells = [
      (
        time_reference(reference, ref_batch, repeats=3) / 64,
        time_reference(reference.encode, ref_batch, repeats=3) / 64,
      )
    ]
    for b, (calls, repeats) in plans.items():
      batch = {k: v[:b] for k, v in pool.items()}
      cells.append((time_genrec(genrec, batch, calls, repeats), time_genrec(encoder, batch, calls, repeats)))
    cells.append((time_genrec(genrec, seen_batch, 3, 5), cells[-1][1]))
    rounds.append(cells)
  (ref_s, ref_enc_s), *cells = np.median(np.asarray(rounds), axis=0).tolist()
  names = ["genrec: Tiger.recommend, jit"] * len(plans) + ["genrec: + already-seen filter (S=20)"]
  rows = [("reference: Python trie, 1 user at a time", 1, ref_s, ref_enc_s)]
  rows += [(name, b, sec, enc) for name, b, (sec, enc) in zip(names, [*plans, 256], cells, strict=True)]
  print(
    "\n| decoder | batch | users/s | ms per batch | of which encoder (ms) | speed-up vs reference "
    "| speed-up, encoder excluded (est.) |"
  )
  print("|---|---|---|---|---|---|---|")
  ref_search = ref_s - ref_enc_s  # per user
  for name, b, sec, enc in rows:
    print(
      f"| {name} | {b} | {b / sec:,.0f} | {1000 * sec:.2f} | {1000 * enc:.2f} | {ref_s * b / sec:.1f}x "
      f"| {ref_search * b / (sec - enc):.1f}x |"
    )
  same, n = agreement(genrec(jax.device_put(ref_batch))[0], reference, ref_batch)
  at256 = next(r for r in rows if r[1] == 256)
  print(
    f"\nSpeed-up at batch 256: {ref_s * 256 / at256[2]:.1f}x end to end (target >= 10x); "
    f"{ref_search * 256 / (at256[2] - at256[3]):.1f}x for the decoder + search alone (encoder time subtracted on "
    f"both sides). Same top-{TOPK} items as the reference for {same}/{n} users."
  )


def size_table(sizes: list[int]) -> None:
  print(
    "\n| items | genrec decode, batch 64 (ms) | reference, 64 users (ms) | genrec tables | table build (s) "
    "| Python trie (tracemalloc) | trie build (s) | note |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for n in sizes:
    cells, note = {}, ""
    try:
      t0 = time.perf_counter()
      codes = synthetic_codes(n)
      note = f"codes {time.perf_counter() - t0:.1f} s, collision digit max {int(codes[:, -1].max())}"
      model, cells["build"] = make_model(codes)
      cells["bytes"] = table_bytes(model)
      trie, cells["trie"], cells["trie_s"] = trie_memory(codes)
      batch = users(n, 64)
      genrec = genrec_recommender(model)
      t0 = time.perf_counter()
      jax.block_until_ready(genrec(jax.device_put(batch)))
      note += f", first call (compile) {time.perf_counter() - t0:.1f} s"
      cells["ms"] = 1000 * time_genrec(genrec, batch, 3, 5)
      cells["ref_ms"] = 1000 * time_reference(reference_recommender(model, trie), batch, repeats=1)
      del model, trie
    except MemoryError:
      note += "; MemoryError: did not fit in this machine's memory"
    except Exception as e:  # e.g. XLA RESOURCE_EXHAUSTED: report the row instead of crashing
      note += f"; failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    get = lambda key, f: f(cells[key]) if key in cells else "-"
    print(
      f"| {n:,} | {get('ms', lambda v: f'{v:.1f}')} | {get('ref_ms', lambda v: f'{v:.0f}')} | "
      f"{get('bytes', fmt_bytes)} | {get('build', lambda v: f'{v:.2f}')} | {get('trie', fmt_bytes)} | "
      f"{get('trie_s', lambda v: f'{v:.2f}')} | {note} |",
      flush=True,
    )


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--quick", action="store_true", help="only the 10k-item catalogue in the size table")
  ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
  args = ap.parse_args()
  t0 = time.time()
  speed_table(10_000)
  size_table([10_000] if args.quick else args.sizes)
  print(
    f"\n(genrec tables: next_prefix + prefix_count + item_prefix, int32, dense at capacity min(N, 64^l) rows per "
    f"level; trie: nested dicts, bytes allocated while building it; total wall {time.time() - t0:.0f} s)"
  )


if __name__ == "__main__":
  main()
