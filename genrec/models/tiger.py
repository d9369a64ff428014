"""TIGER: generative retrieval over semantic IDs (Rajput et al., 2023).

Each item is a tuple of C codes (semantic-ID digits from a tokenizer, the last one TIGER's collision digit).
A T5-style encoder reads the user's history as a flat sequence of code tokens (plus one hashed user token);
the decoder writes the next item's C codes, one level at a time; recommendation is beam search constrained to
tuples of real, unseen items (genrec.models.beam_search).

item_causal=True (not the paper's encoder): each encoder token attends only to tokens of its own and earlier
items (and the user token), so the encoding of the first t items does not depend on what follows and one pass
over a training row gives the decoder every prefix: row position t (history items <= t) predicts targets[:, t].
The decoder's BOS input adds the encoder output at the newest visible item's last code, and its
cross-attention gets a learned bias by how many items back a key is (T5 buckets), the causal counterpart of
the recency embedding. Recommending decodes after the newest history item, the training's last position.

mask_seen=True: the softmax at each decoding level runs only over codes whose prefix leads to a real item that
the history lacks. Training masks the items of the row's input window (up to each target's position) and,
with mask_history, the user's items older than the window (the batch's "before" [B, P]); the search masks the
whole history (`seen`), renormalises each level over what it keeps and scores a tuple by its log-probability
among those items. The model never spends probability on items it will not be allowed to
recommend (SASRec's history bias does the same for its item softmax).

Tokens: 0 = padding; (level l, code c) → 1 + l*K + c; user u → 1 + C*K + (u mod num_user_buckets); BOS last.
At decoder position l only level l's K codes are outputs (the head has a K-wide slice per level).

The item → code table `item_codes` [N+1, C] (row 0 = padding), which items training saw (`trained`) and the
search tables derived from them are non-trainable Variables, zeros until `set_item_codes` loads the tokenizer's
table; they are checkpointed with the model.

New items (cold-start items with no training interaction, items `genrec add-items` added) have a content-derived
prefix but a last code (the collision digit) the decoder never saw in a target, so their full-tuple score is
meaningless. `recommend` follows TIGER's cold-start rule (Rajput et al., 2023, sec. 4.3): the search ranks trained
items; new items whose first C-1 codes match a prefix in the search's beam before the last level are scored by
that prefix's log-probability, and at most floor(new_item_fraction * k) of them enter the top k. Batches
(left-padded, 0 = padding):
  train: {"inputs": int32[B, L], "targets": int32[B, L], "user": int32[B]}   targets[:, -1] (every position's
         with item_causal); with mask_history also "before": int32[B, P] (0-padded)
  eval:  {"history": int32[B, L], "seen": int32[B, S], "user": int32[B]}
"""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models import beam_search as bs
from genrec.models import layers
from genrec.models.common import SequenceSizes
from genrec.models.layers import t5
from genrec.models.semantic_ids.collisions import group_rows
from genrec.registry import register

NUM_BUCKETS, MAX_DISTANCE = 32, 128  # T5's relative position buckets


@dataclasses.dataclass(frozen=True)
class TigerConfig(SequenceSizes):
  num_items: int = 0  # 0: taken from the dataset
  code_levels: int = 0  # C: semantic-ID digits per item, the collision digit included
  codebook_size: int = 0  # K: codes per level (the largest level's)
  num_user_buckets: int = 2000
  dim: int = 128
  enc_layers: int = 4
  dec_layers: int = 4
  num_heads: int = 6
  head_dim: int = 64
  mlp_dim: int = 1024
  dropout: float = 0.1
  max_len: int = 0  # history items; 0: taken from data.max_len
  beam_size: int = 20
  tokenizer: str = ""  # the stage giving the item -> semantic ID table, e.g. "rqvae:ml100k" (the trainer
  tokenizer_overrides: tuple[str, ...] = ()  # runs or reuses it); its --set overrides
  semantic_ids_version: str = ""  # the table this model was trained on (set by the trainer; a mismatch errors)
  recency_emb: bool = True  # tell the model how many items back each history token is: a learned embedding
  # added to the token (bidirectional encoder), or a learned cross-attention bias (item_causal)
  item_causal: bool = False  # the encoder's tokens see no later item's tokens, so one pass encodes every prefix
  # of the history and a training row trains every position's next item (SASRec's signal) rather than only the
  # last; the decoder starts from the newest item's encoder state (see the module doc)
  mask_seen: bool = False  # each level's softmax covers only the codes that lead to an item the history lacks
  # (the search's all_minus_seen constraint), in training and in the search (see the module doc)
  mask_history: bool = False  # with mask_seen, training also masks the user's items before the row's window
  # (the batch's "before" field), so that each target's softmax is the search's over the whole history
  new_item_fraction: float = 0.1  # epsilon: at most this fraction of a top-k list (floor) may be items training
  # never saw (cold-start or added items), scored by their prefix (see recommend)

  task: str = "semantic_id_retrieval"  # genrec.families.semantic_ids

  def with_semantic_ids(self, table_NxC, version: str) -> TigerConfig:
    """Sizes the code vocabulary from the tokenizer's table (its digits, the collision digit included)."""
    table = np.asarray(table_NxC)
    return dataclasses.replace(
      self, code_levels=int(table.shape[1]), codebook_size=int(table.max()) + 1, semantic_ids_version=version
    )


class ItemCodesError(ValueError):
  pass


def codes_fingerprint(codes_NxC) -> int:
  """A nonzero int31 digest of an item → code table: detects a model paired with a table it was not trained on."""
  digest = hashlib.sha256(np.ascontiguousarray(np.asarray(codes_NxC, np.int32)).tobytes()).digest()
  return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF or 1


@register("tiger", TigerConfig)
class Tiger(nnx.Module):
  def __init__(self, cfg: TigerConfig, *, rngs: nnx.Rngs):
    if not 0.0 <= cfg.new_item_fraction <= 1.0:
      raise ValueError(
        f"model.new_item_fraction must lie in [0, 1] (the most of a top-k list new items may "
        f"take), got {cfg.new_item_fraction}"
      )
    if cfg.mask_history and not cfg.mask_seen:
      raise ValueError("model.mask_history masks more of the softmax that mask_seen masks: set model.mask_seen=True")
    if min(cfg.num_items, cfg.code_levels, cfg.codebook_size, cfg.max_len) <= 0:
      raise ValueError(
        f"TigerConfig needs num_items, code_levels, codebook_size and max_len > 0 (got "
        f"{cfg.num_items}, {cfg.code_levels}, {cfg.codebook_size}, {cfg.max_len}); call "
        "cfg.resolve(data, data_cfg) and size the codes like the tokenizer's table"
      )
    self.cfg = cfg
    C, K = cfg.code_levels, cfg.codebook_size
    self.bos = 1 + C * K + cfg.num_user_buckets
    block = dict(dropout=cfg.dropout, rngs=rngs)
    self.embed = layers.Embed(self.bos + 1, cfg.dim, ("vocab", "embed"), rngs=rngs)
    if cfg.recency_emb and cfg.item_causal:
      self.cross_bias = t5.RelativePositionBias(
        cfg.num_heads, bidirectional=False, num_buckets=NUM_BUCKETS, max_distance=MAX_DISTANCE, rngs=rngs
      )
    elif cfg.recency_emb:
      self.recency = layers.Embed(cfg.max_len, cfg.dim, (None, "embed"), rngs=rngs)
    self.enc_bias = t5.RelativePositionBias(
      cfg.num_heads, bidirectional=True, num_buckets=NUM_BUCKETS, max_distance=MAX_DISTANCE, rngs=rngs
    )
    self.dec_bias = t5.RelativePositionBias(
      cfg.num_heads, bidirectional=False, num_buckets=NUM_BUCKETS, max_distance=MAX_DISTANCE, rngs=rngs
    )
    self.encoder = nnx.List(
      [t5.EncoderBlock(cfg.dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim, **block) for _ in range(cfg.enc_layers)]
    )
    self.enc_norm = layers.RMSNorm(cfg.dim, rngs=rngs)
    self.decoder = nnx.List(
      [t5.DecoderBlock(cfg.dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim, **block) for _ in range(cfg.dec_layers)]
    )
    self.dec_norm = layers.RMSNorm(cfg.dim, rngs=rngs)
    self.head = layers.dense(cfg.dim, C * K, ("embed", "vocab"), use_bias=False, rngs=rngs)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
    # Not trained: the tokenizer's table and the beam-search tables derived from it (set_item_codes).
    self.item_codes = nnx.Variable(jnp.zeros((cfg.num_items + 1, C), jnp.int32))
    self.codes_hash = nnx.Variable(jnp.zeros((), jnp.int32))
    caps = bs.prefix_capacity(cfg.num_items, C, K)
    self.next_prefix = nnx.List([nnx.Variable(jnp.full((caps[l], K), -1, jnp.int32)) for l in range(C)])
    self.prefix_count = nnx.List([nnx.Variable(jnp.zeros((caps[l + 1],), jnp.int32)) for l in range(C)])
    self.item_prefix = nnx.List([nnx.Variable(jnp.full((cfg.num_items + 1,), -1, jnp.int32)) for _ in range(C)])
    self.trained = nnx.Variable(jnp.ones((cfg.num_items + 1,), bool).at[0].set(False))
    self.new_items = nnx.Variable(jnp.zeros((cfg.num_items + 1,), jnp.int32))  # bs.new_item_table
    self.new_offsets = nnx.Variable(jnp.zeros((caps[max(C - 1, 0)] + 1,), jnp.int32))

  # ---- the code table -------------------------------------------------------------------------------------

  def set_item_codes(self, codes, trained=None) -> None:
    """Loads the tokenizer's item → code table and rebuilds the beam-search tables (host-side, NumPy).

    `codes`: integers [N, C] (row i = item i+1, the tokenizer's catalogue order) or [N+1, C] (row 0 = padding,
    ignored). Every code must lie in [0, K) and every item's tuple must be unique. `trained`: bool [N+1], the
    items training saw as targets or history (default: all); the others are new items (see the module doc).
    """
    cfg = self.cfg
    n, C, K = cfg.num_items, cfg.code_levels, cfg.codebook_size
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != C or codes.shape[0] not in (n, n + 1):
      raise ItemCodesError(
        f"the item code table has shape {codes.shape}; this TIGER model expects [{n}, {C}] "
        f"(one row per catalogue item) or [{n + 1}, {C}] (row 0 = padding): num_items={n}, "
        f"code_levels={C} (the collision digit included)"
      )
    if not np.issubdtype(codes.dtype, np.integer):
      raise ItemCodesError(f"item codes must be integers; got dtype {codes.dtype}")
    if codes.shape[0] == n:
      codes = np.concatenate([np.zeros((1, C), codes.dtype), codes])
    codes = codes.astype(np.int64)
    codes[0] = 0
    bad = np.argwhere((codes[1:] < 0) | (codes[1:] >= K))
    if len(bad):
      item, level = int(bad[0][0]) + 1, int(bad[0][1])
      raise ItemCodesError(
        f"item {item} has code {int(codes[item, level])} at level {level}, outside [0, {K}) "
        f"(codebook_size={K}); {len(bad)} codes out of range in all"
      )
    inverse, counts = group_rows(codes[1:])
    if counts.max() > 1:
      group = int(counts.argmax())
      items = np.flatnonzero(inverse.reshape(-1) == group) + 1
      raise ItemCodesError(
        f"{int((counts > 1).sum())} code tuples are shared by several items, e.g. items "
        f"{', '.join(map(str, items[:6].tolist()))} all have {tuple(codes[items[0]].tolist())}; every item needs "
        "a unique tuple: append the collision digit (genrec.models.semantic_ids.dedup_codes) and count it in "
        "code_levels"
      )
    tables = bs.build_tables(codes, K)
    trained = np.ones(n + 1, bool) if trained is None else np.asarray(trained, bool).copy()
    if trained.shape != (n + 1,):
      raise ItemCodesError(
        f"`trained` has shape {trained.shape}; expected [{n + 1}] (one flag per item, row 0 = padding)"
      )
    trained[0] = False
    new_items, new_offsets = bs.new_item_table(
      tables.item_prefix[max(C - 2, 0)], trained, self.new_offsets.shape[0] - 1
    )
    self.trained[...] = jnp.asarray(trained)
    self.new_items[...] = jnp.asarray(new_items)
    self.new_offsets[...] = jnp.asarray(new_offsets)
    self.item_codes[...] = jnp.asarray(codes, jnp.int32)
    self.codes_hash[...] = jnp.asarray(codes_fingerprint(codes), jnp.int32)
    for variables, arrays in zip((self.next_prefix, self.prefix_count, self.item_prefix), tables, strict=True):
      for var, array in zip(variables, arrays, strict=True):
        var[...] = jnp.asarray(array)

  def tables(self) -> bs.PrefixTables:
    return bs.PrefixTables(
      *(tuple(v[...] for v in group) for group in (self.next_prefix, self.prefix_count, self.item_prefix))
    )

  # ---- encoder / decoder ----------------------------------------------------------------------------------

  def encoder_tokens(self, history_BxL, user_B):
    """[B, 1 + L*C]: each item's C code tokens in history order, the user token just before the first one."""
    cfg = self.cfg
    B, L = history_BxL.shape
    C, K = cfg.code_levels, cfg.codebook_size
    codes = jnp.take(self.item_codes[...], history_BxL, axis=0)  # [B, L, C]
    offset = (1 + K * jnp.arange(C, dtype=jnp.int32))[None, None, :]
    tokens = jnp.where((history_BxL > 0)[..., None], codes + offset, 0).reshape(B, L * C)
    tokens = jnp.concatenate([jnp.zeros((B, 1), jnp.int32), tokens], axis=1)
    # Left padding: the user token goes right before the history, so relative distances ignore the padding.
    where = L * C - (tokens > 0).sum(axis=1)
    user_token = 1 + C * K + jnp.asarray(user_B, jnp.int32) % cfg.num_user_buckets
    return tokens.at[jnp.arange(B), where].set(user_token)

  def token_items(self, length: int):
    """[S]: the history position of each encoder token (the user token counts as before the first item)."""
    return (jnp.arange(length) - 1) // self.cfg.code_levels

  def encode(self, tokens_BxS):
    """(encoder output [B, S, D], valid [B, S])."""
    valid = tokens_BxS > 0
    pos = jnp.arange(tokens_BxS.shape[1])
    bias, mask = self.enc_bias(pos, pos), layers.padding_mask(valid)
    if self.cfg.item_causal:
      item = self.token_items(len(pos))
      mask = mask & (item[None, :] <= item[:, None])[None, None]
    x = self.embed(tokens_BxS)
    if self.cfg.recency_emb and not self.cfg.item_causal:
      # T5 has no absolute positions, so only the encoder's own attention could tell the decoder which tokens
      # are the newest item; this says it directly (on planted data: far fewer steps to learn the rule).
      S, C = tokens_BxS.shape[1], self.cfg.code_levels
      slot = jnp.clip((S - 1 - jnp.arange(S)) // C, 0, self.cfg.max_len - 1)
      is_code = (tokens_BxS > 0) & (tokens_BxS <= C * self.cfg.codebook_size)
      x = x + self.recency(slot)[None] * is_code[..., None].astype(x.dtype)
    x = self.dropout(x)
    for block in self.encoder:
      x = block(x, mask=mask, bias=bias)
    return self.dropout(self.enc_norm(x)), valid

  def encode_batch(self, batch, history_key: str = "history"):
    if "user" not in batch:
      raise KeyError("TIGER batches need 'user' (int32 [B], the user index) for the hashed user token")
    return self.encode(self.encoder_tokens(batch[history_key], batch["user"]))

  def level_log_probs(self, h_BxTxD, levels_T):
    """Log-softmax over each position's level's K codes: [B, T, K]."""
    C, K = self.cfg.code_levels, self.cfg.codebook_size
    w_DxTxK = self.head.kernel[...].reshape(-1, C, K)[:, levels_T].astype(h_BxTxD.dtype)
    return jax.nn.log_softmax(jnp.einsum("btd,dtk->btk", h_BxTxD, w_DxTxK).astype(jnp.float32), axis=-1)

  def code_tokens(self, level, codes):
    return 1 + self.cfg.codebook_size * level + codes

  def decode(self, enc_BxSxD, enc_valid_BxS, codes_BxC):
    """Teacher forcing, no cache: log-probs [B, C, K] of each level's code given the true earlier codes, for the
    item after the whole history."""
    return self.decode_positions(enc_BxSxD, enc_valid_BxS, codes_BxC[:, None])[:, 0]

  def decode_positions(self, enc_BxSxD, enc_valid_BxS, codes_BxTxC):
    """Teacher forcing for the items after each of the last T history positions (T > 1 needs item_causal):
    log-probs [B, T, C, K]; codes_BxTxC[:, t] is the item after history position L - T + t."""
    B, T, C = codes_BxTxC.shape
    prev = self.code_tokens(jnp.arange(C - 1, dtype=jnp.int32)[None, None, :], codes_BxTxC[..., :-1])
    tokens = jnp.concatenate([jnp.full((B, T, 1), self.bos, jnp.int32), prev], axis=-1)
    x = self.embed(tokens)
    if not self.cfg.item_causal:
      if T != 1:
        raise ValueError(f"decoding after {T} history positions needs model.item_causal=True")
      h = self.decoder_hidden(self.dropout(x[:, 0]), enc_BxSxD, self.cross_context(enc_BxSxD, enc_valid_BxS))
      return self.level_log_probs(h, jnp.arange(C))[:, None]
    # Row b*T + t decodes after position L - T + t; the grouped cross-attention sees all T*C queries of a row.
    L = (enc_BxSxD.shape[1] - 1) // C
    query_items = L - T + jnp.arange(T)
    state_BxTxD = enc_BxSxD[:, C::C][:, L - T :]
    x = self.dropout(x.at[:, :, 0].add(state_BxTxD.astype(x.dtype))).reshape(B * T, C, -1)
    mask, bias = self.cross_context(enc_BxSxD, enc_valid_BxS, query_items)
    mask = jnp.repeat(mask, C, axis=2)
    bias = None if bias is None else jnp.repeat(bias, C, axis=2)
    h = self.decoder_hidden(x, enc_BxSxD, (mask, bias))
    return self.level_log_probs(h, jnp.arange(C)).reshape(B, T, C, -1)

  def cross_context(self, enc_BxSxD, enc_valid_BxS, query_items_Q=None):
    """(cross-attention mask [B, 1, Q, S] or [B, 1, 1, S], bias [1, H, Q, S] or None) for decoder queries after
    history positions `query_items_Q` (default: the newest). Bidirectional encoder: every real token, no bias;
    item_causal: the tokens of items up to the query's, biased by how many items back they are."""
    mask = layers.padding_mask(enc_valid_BxS)
    if not self.cfg.item_causal:
      return mask, None
    S = enc_BxSxD.shape[1]
    item = self.token_items(S)
    if query_items_Q is None:
      query_items_Q = item[-1:]
    mask = mask & (item[None, :] <= query_items_Q[:, None])[None, None]
    bias = self.cross_bias(query_items_Q, item) if self.cfg.recency_emb else None
    return mask, bias

  def decoder_hidden(self, x_BxTxD, enc_BxSxD, cross):
    """The decoder stack over embedded inputs (position t sees inputs <= t): [B, T, D]. `cross`: the
    cross_context (mask, bias)."""
    pos = jnp.arange(x_BxTxD.shape[1])
    bias, mask = self.dec_bias(pos, pos), layers.causal_mask(len(pos))
    cross_mask, cross_bias = cross
    for block in self.decoder:
      x_BxTxD, _ = block(
        x_BxTxD,
        block.cross_attn.project_kv(enc_BxSxD),
        self_mask=mask,
        self_bias=bias,
        cross_mask=cross_mask,
        cross_bias=cross_bias,
      )
    return self.dropout(self.dec_norm(x_BxTxD))

  def start_decoding(self, enc_BxSxD, enc_valid_BxS):
    """What every decode step reuses: each decoder block's cross-attention (k, v), the cross_context (mask,
    bias) and, with item_causal, the newest item's encoder state [B, D] (added to the BOS input)."""
    state = enc_BxSxD[:, -1] if self.cfg.item_causal else None
    kv = [block.cross_attn.project_kv(enc_BxSxD) for block in self.decoder]
    return kv, self.cross_context(enc_BxSxD, enc_valid_BxS), state

  def init_cache(self, rows: int):
    cfg = self.cfg
    return [t5.init_kv_cache(rows, cfg.code_levels, cfg.num_heads, cfg.head_dim) for _ in self.decoder]

  def decode_step(self, level: int, prev_code_R, cache, context):
    """One decoder position for R rows (R = a multiple of the encoder batch: beams of a row are consecutive).

    level: the position (0 = BOS input); prev_code_R: the code chosen at level-1 (ignored at level 0).
    Returns (log-probs [R, K] over level `level`'s codes, the updated cache).
    """
    cross_kv, (cross_mask, cross_bias), state_BxD = context
    C = self.cfg.code_levels
    if level == 0:
      token = jnp.full(prev_code_R.shape, self.bos, jnp.int32)
    else:
      token = self.code_tokens(level - 1, prev_code_R)
    x = self.embed(token)
    if level == 0 and state_BxD is not None:  # beams of a row are consecutive
      x = x + jnp.repeat(state_BxD, x.shape[0] // state_BxD.shape[0], axis=0).astype(x.dtype)
    x = x[:, None]
    keys = jnp.arange(C)
    bias = self.dec_bias(jnp.full((1,), level), keys)
    mask = (keys <= level)[None, None, None, :]
    new_cache = []
    for block, kv, layer_cache in zip(self.decoder, cross_kv, cache, strict=True):
      x, layer_cache = block(
        x,
        kv,
        self_mask=mask,
        self_bias=bias,
        cross_mask=cross_mask,
        cross_bias=cross_bias,
        cache=layer_cache,
        index=level,
      )
      new_cache.append(layer_cache)
    return self.level_log_probs(self.dec_norm(x), jnp.full((1,), level))[:, 0], new_cache

  # ---- the model interface --------------------------------------------------------------------------------

  def allowed_codes(self, targets_BxT, seen_BxS, visible_TxS=None, before_BxP=None):
    """bool [B, T, C, K]: at each level of each target item, the codes that extend the target's true earlier
    codes to a prefix of a real item not among the row's seen items (0 = padding; those `visible_TxS` marks for
    target t, default all; and, for every target, the items of `before_BxP`), as the search keeps them; the
    target's own code always counts."""
    C, K = self.cfg.code_levels, self.cfg.codebook_size
    tables = self.tables()
    codes = jnp.take(self.item_codes[...], targets_BxT, axis=0)  # [B, T, C]
    if visible_TxS is None:  # sorted, so repeats are adjacent
      seen = jnp.sort(seen_BxS, axis=1)
      first = bs.first_of_runs(seen)
      visible = jnp.ones((1, 1, seen.shape[1]), bool)
    else:
      seen, S = seen_BxS, seen_BxS.shape[1]
      earlier = jnp.tril(jnp.ones((S, S), bool), -1)
      first = ~((seen[:, :, None] == seen[:, None, :]) & earlier[None]).any(axis=2)
      visible = visible_TxS[None]
    if before_BxP is not None:  # each of those items counts once, from `before`, wherever else it appears
      first &= ~(seen[:, :, None] == before_BxP[:, None, :]).any(axis=2)
      before_prefixes = bs.seen_prefixes(tables, before_BxP)  # per level, sorted: counted by binary search
    seen = jnp.where(first & (seen > 0), seen, 0)
    allowed = []
    for level in range(C):
      parent = jnp.zeros_like(targets_BxT) if level == 0 else tables.item_prefix[level - 1][targets_BxT]
      child = jnp.take(tables.next_prefix[level], jnp.maximum(parent, 0), axis=0)  # [B, T, K]
      count = jnp.take(tables.prefix_count[level], jnp.maximum(child, 0), axis=0)
      seen_prefix = jnp.take(tables.item_prefix[level], seen, axis=0)  # [B, S], -1 for padding
      hit = (seen_prefix[:, None, None, :] == child[..., None]) & (child >= 0)[..., None]
      seen_count = (hit & visible[:, :, None, :]).sum(axis=-1)
      if before_BxP is not None:
        seen_count += bs.count_sorted(before_prefixes[level], child.reshape(child.shape[0], -1)).reshape(child.shape)
      own = jnp.arange(K)[None, None, :] == codes[:, :, level, None]
      allowed.append(((child >= 0) & (count - seen_count > 0)) | own)
    return jnp.stack(allowed, axis=2)

  def loss(self, batch):
    """Cross-entropy of the next item's codes (mean over the C digits) given the history, averaged over the
    targets: one per row (targets[:, -1]), or every position's with item_causal; a target counts where it and
    its input are real items. `rows` counts them."""
    targets_BxT = batch["targets"] if self.cfg.item_causal else batch["targets"][:, -1:]
    enc, valid = self.encode_batch(batch, "inputs")
    codes = jnp.take(self.item_codes[...], targets_BxT, axis=0)
    log_probs = self.decode_positions(enc, valid, codes)
    if self.cfg.mask_seen:  # the window's items up to each target's position (the last: the whole window)
      L, T = batch["inputs"].shape[1], targets_BxT.shape[1]
      visible_TxL = jnp.arange(L)[None, :] <= (L - T + jnp.arange(T))[:, None]
      before = batch["before"] if self.cfg.mask_history else None
      allowed = self.allowed_codes(targets_BxT, batch["inputs"], visible_TxL, before)
      log_probs = bs.masked_log_softmax(log_probs, allowed)
    nll_BxT = -jnp.take_along_axis(log_probs, codes[..., None], axis=-1)[..., 0].mean(axis=-1)
    T = targets_BxT.shape[1]
    weight_BxT = ((targets_BxT > 0) & (batch["inputs"][:, -T:] > 0)).astype(jnp.float32)
    rows = weight_BxT.sum()
    loss = (nll_BxT * weight_BxT).sum() / jnp.maximum(rows, 1.0)
    return loss, {"loss": loss, "rows": rows}

  def item_log_probs(self, batch, items_BxM):
    """Total log-probability of given items [B, M] (teacher forcing, no search): [B, M]."""
    enc, valid = self.encode_batch(batch)
    B, M = items_BxM.shape
    codes = jnp.take(self.item_codes[...], items_BxM.reshape(B * M), axis=0)
    rep = lambda x: jnp.repeat(x, M, axis=0)
    log_probs = self.decode(rep(enc), rep(valid), codes)
    if self.cfg.mask_seen:  # as the search scores them (no `seen`: every real item)
      seen = batch["seen"] if "seen" in batch else jnp.zeros((B, 1), jnp.int32)
      allowed = self.allowed_codes(items_BxM, seen).reshape(B * M, *log_probs.shape[1:])
      log_probs = bs.masked_log_softmax(log_probs, allowed)
    return jnp.take_along_axis(log_probs, codes[..., None], axis=-1)[..., 0].sum(-1).reshape(B, M)

  def new_item_slots(self, k: int) -> int:
    """How many of a top-k list new items may take: floor(new_item_fraction * k); 0 with one code level."""
    return int(self.cfg.new_item_fraction * k) if self.cfg.code_levels >= 2 else 0

  def generate(
    self, batch, k: int, *, constrained: bool = True, beam_size: int | None = None, trained_only: bool = False
  ) -> bs.BeamResult:
    """Beam search (width max(beam_size, k); beam_size defaults to the config's) over code tuples for an eval
    batch; see beam_search.beam_search. trained_only: new items are left out of the last level."""
    enc, valid = self.encode_batch(batch)
    beam_size = beam_size or self.cfg.beam_size
    B, W = enc.shape[0], max(beam_size, k)
    context = self.start_decoding(enc, valid)
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    beams = lambda x: x.reshape(B, -1, *x.shape[1:])

    def step(level, prev_BxW, cache):  # W is 1 at level 0 (one live beam per row)
      log_probs, cache = self.decode_step(level, prev_BxW.reshape(-1), jax.tree.map(flat, cache), context)
      return log_probs.reshape(B, prev_BxW.shape[1], -1), jax.tree.map(beams, cache)

    cache = jax.tree.map(beams, self.init_cache(B * W))
    return bs.beam_search(
      step,
      cache,
      self.tables(),
      batch_size=B,
      beam_size=beam_size,
      k=k,
      seen_BxS=batch.get("seen") if constrained else None,
      constrained=constrained,
      item_ok=self.trained[...] if trained_only else None,
      renormalize=self.cfg.mask_seen and constrained,
    )

  def recommend(self, batch, k: int, *, constrained: bool = True, beam_size: int | None = None):
    """Top-k unseen items [B, k] and their scores [B, k]; -1 / -inf past the last valid item. A trained item's
    score is its total log-probability; a new item's, that of its first C-1 codes (at most new_item_slots(k)
    new items; see the module doc). constrained=False: unconstrained decoding, no new-item rule; a generated
    tuple that is no item comes back as -1."""
    slots = self.new_item_slots(k) if constrained else 0
    result = self.generate(batch, k, constrained=constrained, beam_size=beam_size, trained_only=slots > 0)
    if not slots:
      return result.items, result.scores
    return bs.mix_new_items(
      result, self.new_items[...], self.new_offsets[...], k=k, slots=slots, seen_BxS=batch.get("seen")
    )

  def invalid_rate(self, batch, k: int | None = None, *, beam_size: int | None = None):
    """Fraction of the top-k tuples from unconstrained beam search that are not real items, per row: [B]."""
    k = k or beam_size or self.cfg.beam_size
    result = self.generate(batch, k, constrained=False, beam_size=beam_size)
    return ((result.items < 0) & jnp.isfinite(result.scores)).mean(axis=1)
