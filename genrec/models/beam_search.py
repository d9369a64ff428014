"""Batched beam search over code tuples, constrained to the tuples of real items by dense per-level tables.

An item is a tuple of C codes, each in [0, K). Prefixes of length l are numbered per level; the tables are:

  next_prefix[l]   int32 [P_l, K]   id of prefix p extended by code c, or -1 if no item starts that way.
                                    P_0 = 1 (the empty prefix); the last level's ids are item ids (1..N).
  prefix_count[l]  int32 [P_{l+1}]  items under each prefix of length l+1 (last level: 1 per item id).
  item_prefix[l]   int32 [N+1]      each item's prefix id after l+1 codes (-1 for item 0, the padding).

Every table has a fixed row capacity (`prefix_capacity`), so they can live in a model built before its code
table is known. Decoding unrolls the C levels (C is small and static); each level is a gather into its table and
one top-k over beam x K candidates, so the whole search is one jitted graph with no host round trip.

Already-seen items are removed inside the search, not after it: a candidate prefix is kept only if some item
under it is unseen (its item count minus the row's seen items under it, counted by binary search in the row's
sorted seen prefixes), so no beam is spent on a prefix whose items the user has all seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from genrec.models.semantic_ids.collisions import group_rows

_NONE = np.iinfo(np.int32).max  # sorts after every prefix id; matches none


class PrefixTables(NamedTuple):
  next_prefix: tuple  # C x [P_l, K]
  prefix_count: tuple  # C x [P_{l+1}]
  item_prefix: tuple  # C x [N+1]


class BeamResult(NamedTuple):
  items: jax.Array  # int32 [B, k]; -1 where fewer than k valid items exist (or, unconstrained, for a
  # generated tuple that is no item)
  scores: jax.Array  # float32 [B, k], total log-probability; -inf where items is -1 for lack of items
  codes: jax.Array  # int32 [B, k, C], the generated tuples
  prefixes: jax.Array  # int32 [B, W], the beam before the last level: ids of prefixes of C-1 codes (-1: dead)
  prefix_scores: jax.Array  # float32 [B, W], their log-probabilities (-inf: dead)


def prefix_capacity(num_items: int, code_levels: int, codebook_size: int) -> list[int]:
  """Rows P_l of next_prefix[l] for l = 0..C: min(N, K^l) (P_0 = 1), and P_C = N + 1 (item ids)."""
  caps = [min(num_items, codebook_size**level) for level in range(code_levels)]
  return [1, *caps[1:], num_items + 1]


def empty_tables(num_items: int, code_levels: int, codebook_size: int) -> PrefixTables:
  """Tables with no valid prefix (every search returns -1), shaped like those of a real catalogue."""
  caps = prefix_capacity(num_items, code_levels, codebook_size)
  return PrefixTables(
    tuple(np.full((caps[l], codebook_size), -1, np.int32) for l in range(code_levels)),
    tuple(np.zeros(caps[l + 1], np.int32) for l in range(code_levels)),
    tuple(np.full(num_items + 1, -1, np.int32) for _ in range(code_levels)),
  )


def build_tables(codes_NxC: np.ndarray, codebook_size: int) -> PrefixTables:
  """Host-side tables from an item → code table [N+1, C] (row 0 = padding, ignored; rows 1..N unique, codes in
  [0, K)); validated by the caller."""
  codes = np.asarray(codes_NxC, np.int64)
  num_items, levels = codes.shape[0] - 1, codes.shape[1]
  tables = empty_tables(num_items, levels, codebook_size)
  parent = np.zeros(num_items, np.int64)  # every item starts at the empty prefix 0
  for level in range(levels):
    if level == levels - 1:
      child = np.arange(1, num_items + 1)
    else:
      child, _ = group_rows(codes[1:, : level + 1])
    tables.next_prefix[level][parent, codes[1:, level]] = child
    tables.prefix_count[level][:] = np.bincount(child, minlength=len(tables.prefix_count[level]))
    tables.item_prefix[level][1:] = child
    parent = child
  return tables


def first_of_runs(sorted_BxS: jax.Array) -> jax.Array:
  """bool [B, S]: where each row's sorted values start a new run (the first of each distinct value)."""
  return jnp.concatenate([jnp.ones_like(sorted_BxS[:, :1], bool), sorted_BxS[:, 1:] != sorted_BxS[:, :-1]], axis=1)


def seen_prefixes(tables: PrefixTables, seen_BxS: jax.Array) -> tuple:
  """Per level, each row's distinct seen items mapped to their prefix ids and sorted: C x int32 [B, S]."""
  seen = jnp.sort(seen_BxS, axis=1)
  seen = jnp.where(first_of_runs(seen) & (seen > 0), seen, 0)
  out = []
  for item_prefix in tables.item_prefix:
    prefix = jnp.take(item_prefix, seen, axis=0)
    out.append(jnp.sort(jnp.where(prefix >= 0, prefix, _NONE), axis=1))
  return tuple(out)


def count_sorted(sorted_BxS, query_BxM):
  """How many times each query value occurs in its row of a sorted array: [B, M]."""
  side = lambda s: jax.vmap(lambda row, q: jnp.searchsorted(row, q, side=s))(sorted_BxS, query_BxM)
  return side("right") - side("left")


def masked_log_softmax(log_probs, ok):
  """log_probs renormalised over the entries `ok` marks (last axis); the others -inf. A row with none stays
  -inf (no NaN)."""
  masked = jnp.where(ok, log_probs, -jnp.inf)
  norm = jax.scipy.special.logsumexp(masked, axis=-1, keepdims=True)
  return jnp.where(ok, masked - jnp.where(jnp.isfinite(norm), norm, 0.0), -jnp.inf)


StepFn = Callable[[int, jax.Array, object], tuple[jax.Array, object]]


def beam_search(
  step_fn: StepFn,
  cache,
  tables: PrefixTables,
  *,
  batch_size: int,
  beam_size: int,
  k: int,
  seen_BxS: jax.Array | None = None,
  constrained: bool = True,
  item_ok: jax.Array | None = None,
  renormalize: bool = False,
) -> BeamResult:
  """Top-k code tuples by total log-probability, C steps of beam search.

  step_fn(level, prev_code_BxW, cache) -> (log_probs_BxWxK, cache): the model's distribution over level
  `level`'s K codes for each beam, given the code chosen at the previous level (-1 at level 0, meaning "start").
  Every leaf of `cache` has leading axes [B, W] (W = beam width); beams are reordered along axis 1 after each
  step. Level 0 has one live beam per row, so step_fn sees width 1 there (leaves [B, 1, ...]) and W after.
  Anything shared by a row's beams (an encoder output) belongs in step_fn's closure, not in the cache.

  The beam width is max(beam_size, k). constrained=True keeps only prefixes of real items (unseen ones, given
  `seen_BxS`, int32 [B, S], 0 = padding); a row with fewer valid continuations than beams fills the rest with
  -inf, and if fewer than k valid items exist the tail of `items` is -1 with score -inf. constrained=False
  searches all K^C tuples (for measuring how often an unconstrained model generates a non-item): a generated
  tuple that is no item comes back as -1 with its real score. `item_ok` (bool [N+1], constrained only) keeps the
  items it marks False out of the last level; their prefixes still count as live before it (the `prefixes` beam).
  renormalize (constrained only): each beam's log-probabilities are renormalised over the codes the constraint
  keeps (real, unseen items; `item_ok` does not narrow it), so a tuple's score is its log-probability among
  the allowed items: what a model trained with that softmax (TIGER's mask_seen) gives.
  """
  width = max(beam_size, k)
  levels, num_codes = len(tables.next_prefix), tables.next_prefix[0].shape[1]
  seen = seen_prefixes(tables, seen_BxS) if (constrained and seen_BxS is not None) else None
  scores = jnp.full((batch_size, width), -jnp.inf, jnp.float32).at[:, 0].set(0.0)  # one live beam at start
  prefix = jnp.zeros((batch_size, width), jnp.int32)
  prev_code = jnp.full((batch_size, width), -1, jnp.int32)
  codes = jnp.zeros((batch_size, width, 0), jnp.int32)
  penultimate = (jnp.zeros((batch_size, width), jnp.int32), scores)
  for level in range(levels):
    if level == 0:  # one live beam per row: decode it alone, the top-k below fans it out to W
      scores, prefix, prev_code, codes = scores[:, :1], prefix[:, :1], prev_code[:, :1], codes[:, :1]
      cache = jax.tree.map(lambda x: x[:, :1], cache)
    beams = scores.shape[1]
    log_probs, cache = step_fn(level, prev_code, cache)
    table = tables.next_prefix[level]
    live = jnp.isfinite(scores)[..., None]
    child = jnp.take(table, jnp.clip(prefix, 0, table.shape[0] - 1), axis=0)  # [B, W, K]
    child = jnp.where(live & (prefix >= 0)[..., None], child, -1)
    ok = jnp.broadcast_to(live, child.shape)
    if constrained:
      ok = ok & (child >= 0)
      if seen is not None:
        flat = child.reshape(batch_size, beams * num_codes)
        count = jnp.take(tables.prefix_count[level], jnp.maximum(flat, 0), axis=0)
        ok = ok & ((count - count_sorted(seen[level], flat)) > 0).reshape(child.shape)
      if renormalize:
        log_probs = masked_log_softmax(log_probs.astype(jnp.float32), ok)
      if item_ok is not None and level == levels - 1:
        ok = ok & jnp.take(item_ok, jnp.maximum(child, 0), axis=0)
    cand = jnp.where(ok, scores[..., None] + log_probs.astype(jnp.float32), -jnp.inf)
    # The last level keeps only k (XLA CPU turned a top-W there, whose outputs were then cut to k, into a full
    # sort of all B x W*K candidates: 10x the cost of the TopK it emits for the other levels).
    keep = k if level == levels - 1 else width
    scores, idx = jax.lax.top_k(cand.reshape(batch_size, beams * num_codes), min(keep, beams * num_codes))
    if scores.shape[1] < keep:  # fewer candidates than beams (level 0 with K < W): dead beams
      pad = keep - scores.shape[1]
      scores = jnp.pad(scores, ((0, 0), (0, pad)), constant_values=-jnp.inf)
      idx = jnp.pad(idx, ((0, 0), (0, pad)))
    parent, code = idx // num_codes, idx % num_codes
    prefix = jnp.take_along_axis(child.reshape(batch_size, -1), idx, axis=1)
    prefix = jnp.where(jnp.isfinite(scores), prefix, -1)
    codes = jnp.concatenate([jnp.take_along_axis(codes, parent[..., None], axis=1), code[..., None]], axis=2)
    cache = jax.tree.map(
      lambda x: jnp.take_along_axis(x, parent.reshape(parent.shape + (1,) * (x.ndim - 2)), axis=1), cache
    )
    prev_code = code
    if level == levels - 2:
      penultimate = (prefix, scores)
  items = jnp.where(jnp.isfinite(scores), prefix, -1)[:, :k]
  return BeamResult(items, scores[:, :k], codes[:, :k], *penultimate)


def new_item_table(item_prefix_N: np.ndarray, trained_N: np.ndarray, num_prefixes: int) -> tuple[np.ndarray, ...]:
  """Host-side CSR of the items not `trained` (row 0 ignored), grouped by their prefix id `item_prefix_N` and in
  id order within a prefix: (items int32 [N+1], zero-padded; offsets int32 [num_prefixes + 1])."""
  prefix = np.asarray(item_prefix_N, np.int64)
  new = np.flatnonzero(~np.asarray(trained_N, bool)[1:]) + 1
  order = new[np.lexsort((new, prefix[new]))]
  items = np.zeros(len(prefix), np.int32)
  items[: len(order)] = order
  offsets = np.concatenate([[0], np.cumsum(np.bincount(prefix[new], minlength=num_prefixes))]).astype(np.int32)
  return items, offsets


def mix_new_items(
  result: BeamResult,
  new_items: jax.Array,
  new_offsets: jax.Array,
  *,
  k: int,
  slots: int,
  seen_BxS: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """TIGER's cold-start rule: the top k of the search's items plus at most `slots` new (never trained) items,
  each scored by its prefix of C-1 codes — the search's beam before the last level — since its last code was
  never trained. Under one prefix new items are taken in id order, up to `slots` of them (seen ones skipped).
  The search must have left new items out of its last level (`beam_search(item_ok=trained)`).
  Returns (items [B, k], scores [B, k]); -1 / -inf past the last valid item."""
  B, W = result.prefixes.shape
  live = (result.prefixes >= 0) & jnp.isfinite(result.prefix_scores)
  prefix = jnp.where(live, result.prefixes, 0)
  start = jnp.take(new_offsets, prefix, axis=0)
  count = jnp.take(new_offsets, prefix + 1, axis=0) - start
  j = jnp.arange(slots, dtype=jnp.int32)
  ok = live[..., None] & (j[None, None, :] < count[..., None])  # [B, W, slots]
  items = jnp.take(new_items, jnp.clip(start[..., None] + j[None, None, :], 0, new_items.shape[0] - 1), axis=0)
  items = jnp.where(ok, items, 0).reshape(B, W * slots)
  ok = ok.reshape(B, W * slots)
  if seen_BxS is not None:
    ok = ok & (count_sorted(jnp.sort(seen_BxS, axis=1), items) == 0)
  scores = jnp.where(ok, jnp.repeat(result.prefix_scores, slots, axis=1), -jnp.inf)
  scores, pos = jax.lax.top_k(scores, slots)
  items = jnp.where(jnp.isfinite(scores), jnp.take_along_axis(items, pos, axis=1), -1)
  all_scores = jnp.concatenate([result.scores, scores], axis=1)
  all_items = jnp.concatenate([result.items, items], axis=1)
  top, pos = jax.lax.top_k(all_scores, k)
  return jnp.where(jnp.isfinite(top), jnp.take_along_axis(all_items, pos, axis=1), -1), top
