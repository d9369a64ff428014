"""TIGER and constrained beam search: real items only, beam == brute force, seen filter, KV cache == full
recomputation, T5 buckets by hand, decoder causality, code-table errors, learning a planted rule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from genrec.models import beam_search as bs
from genrec.models.layers import relative_position_bucket
from genrec.models.tiger import ItemCodesError, Tiger, TigerConfig

N, C, K, L = 12, 3, 4, 4


def catalogue_codes(num_items=N, seed=0):
  """[N, C]: random (level 0, level 1) pairs with repeats, made unique by TIGER's collision digit."""
  rng = np.random.default_rng(seed)
  pairs = rng.integers(0, K, (num_items, C - 1))
  pairs[:, 0] = np.minimum(pairs[:, 0], 2)  # level-0 code 3 unused: a dead branch for the search
  extra = np.array([sum((pairs[j] == pairs[i]).all() for j in range(i)) for i in range(num_items)])
  return np.concatenate([pairs, extra[:, None]], axis=1)


def make_model(*, beam_size=4, num_items=N, codes=None, dropout=0.0, seed=0, **kw):
  cfg = TigerConfig(
    num_items=num_items,
    code_levels=C,
    codebook_size=K,
    num_user_buckets=7,
    dim=32,
    enc_layers=1,
    dec_layers=1,
    num_heads=2,
    head_dim=16,
    mlp_dim=64,
    dropout=dropout,
    max_len=L,
    beam_size=beam_size,
    **kw,
  )
  model = nnx.jit(lambda: Tiger(cfg, rngs=nnx.Rngs(params=seed, dropout=seed + 1)))()
  model.set_item_codes(catalogue_codes(num_items) if codes is None else codes)
  model.eval()
  return model


def eval_batch():
  history = np.array([[0, 0, 3, 5], [1, 2, 4, 6], [0, 0, 0, 7]], np.int32)
  seen = np.zeros((3, N), np.int32)
  seen[1, :8] = [1, 2, 4, 6, 8, 9, 10, 11]  # leaves 3, 5, 7, 12
  seen[2, :3] = [7, 7, 0]  # duplicates and padding are fine
  return {"history": history, "seen": seen, "user": np.array([0, 5, 13], np.int32)}


@pytest.fixture(scope="module")
def wide():
  """beam 16 >= 12 items: the search keeps every valid prefix, so it is exact."""
  return make_model(beam_size=16)


@pytest.fixture(scope="module")
def causal():
  """The item-causal encoder (one pass trains every position), beam 16: exact too."""
  return make_model(beam_size=16, item_causal=True)


@pytest.fixture(scope="module")
def masked():
  """item_causal with mask_seen: the softmax covers unseen real items only."""
  return make_model(beam_size=16, item_causal=True, mask_seen=True)


@pytest.fixture(params=["bidirectional", "item_causal", "mask_seen"])
def either(request, wide, causal, masked):
  return {"bidirectional": wide, "item_causal": causal, "mask_seen": masked}[request.param]


def test_beam_search_equals_brute_force_and_filters_seen(either):
  wide = either
  batch = eval_batch()
  items, scores = nnx.jit(lambda m, b: m.recommend(b, N))(wide, batch)
  everything = np.tile(np.arange(1, N + 1, dtype=np.int32), (3, 1))
  brute = np.asarray(nnx.jit(lambda m, b, i: m.item_log_probs(b, i))(wide, batch, everything))
  for row in range(3):
    seen = set(batch["seen"][row].tolist()) - {0}
    unseen = [i for i in range(1, N + 1) if i not in seen]
    want = sorted(unseen, key=lambda i: -brute[row, i - 1])
    got = np.asarray(items[row])
    np.testing.assert_array_equal(got[: len(want)], want)
    np.testing.assert_allclose(scores[row, : len(want)], brute[row, np.array(want) - 1], rtol=1e-5, atol=1e-5)
    # fewer valid items than k: the tail is -1 / -inf
    assert (got[len(want) :] == -1).all() and np.isneginf(np.asarray(scores[row, len(want) :])).all()


def test_narrow_beam_returns_real_unseen_items(wide):
  codes = catalogue_codes()
  batch = eval_batch()
  keep = [4, 11]  # two unseen items under different level-0 codes
  assert codes[keep[0] - 1, 0] != codes[keep[1] - 1, 0]
  batch["seen"][0] = [i for i in range(1, N + 1) if i not in keep] + [0, 0]

  def run(model, batch):
    return (
      model.recommend(batch, 2, beam_size=2),
      model.invalid_rate(batch, 2, beam_size=2),
      model.recommend(batch, 2, constrained=False, beam_size=2)[0],
    )

  (items, scores), rate, free = nnx.jit(run)(wide, batch)
  # pruning seen items only at the last level could spend both beams on a fully-seen prefix
  assert sorted(np.asarray(items[0]).tolist()) == keep and np.isfinite(np.asarray(scores[0])).all()
  for row in range(1, 3):
    got = np.asarray(items[row])
    assert ((got >= 1) & (got <= N)).all() and len(set(got.tolist())) == 2
    assert not set(got.tolist()) & set(batch["seen"][row].tolist())
  # unconstrained decoding generates non-items (K^C = 64 tuples, 12 items); constrained never does
  assert rate.shape == (3,) and ((rate >= 0) & (rate <= 1)).all() and float(rate.mean()) > 0
  np.testing.assert_allclose(rate, (np.asarray(free) < 0).mean(1))


def test_new_items_enter_by_their_prefix_score_within_the_cap():
  """TIGER's cold-start rule: untrained items are ranked by the log-probability of their first C-1 codes, at most
  floor(epsilon * k) of them in a top k; trained items keep their full-tuple scores. Reference: teacher-forced
  per-digit log-probabilities of every item, merged by hand."""
  codes = catalogue_codes()
  new = {3, 7, 10}
  trained = np.array([False] + [i not in new for i in range(1, N + 1)])
  model = make_model(beam_size=16, new_item_fraction=0.5)  # beam 16 >= every prefix: the search is exact
  model.set_item_codes(codes, trained)
  batch = eval_batch()
  batch["seen"][0, :2] = [10, 1]  # a seen new item is never returned
  k = 6  # 3 slots for new items

  def digits(m, b, items_BxM):
    enc, valid = m.encode_batch(b)
    B, M = items_BxM.shape
    c = jnp.take(m.item_codes[...], items_BxM.reshape(B * M), axis=0)
    log_probs = m.decode(jnp.repeat(enc, M, axis=0), jnp.repeat(valid, M, axis=0), c)
    return jnp.take_along_axis(log_probs, c[..., None], axis=-1)[..., 0].reshape(B, M, C)

  everything = np.tile(np.arange(1, N + 1, dtype=np.int32), (3, 1))
  per_digit = np.asarray(nnx.jit(digits)(model, batch, everything), np.float64)
  (items, scores), (items0, _) = nnx.jit(lambda m, b: (m.recommend(b, k), m.recommend(b, 2)))(model, batch)
  for row in range(3):
    seen = set(batch["seen"][row].tolist()) - {0}
    cands = [
      (per_digit[row, i - 1].sum() if i not in new else per_digit[row, i - 1, :-1].sum(), i in new, i)
      for i in range(1, N + 1)
      if i not in seen
    ]
    warm = sorted([c for c in cands if not c[1]], key=lambda c: -c[0])[:k]
    cold = sorted([c for c in cands if c[1]], key=lambda c: (-c[0], c[2]))[: k // 2]
    want = sorted(warm + cold, key=lambda c: (-c[0], c[1]))[:k]
    np.testing.assert_array_equal(np.asarray(items[row])[: len(want)], [c[2] for c in want])
    np.testing.assert_allclose(np.asarray(scores[row])[: len(want)], [c[0] for c in want], rtol=1e-5, atol=1e-5)
    assert sum(int(i) in new for i in np.asarray(items0[row])) <= 1  # floor(0.5 * 2) = 1 slot
  assert 10 not in np.asarray(items[0]).tolist()
  assert any(int(i) in new for i in np.asarray(items).ravel())  # the rule did let some in
  # new_item_fraction=0 (or every item trained) is the plain search: new items only through their full tuple
  plain = make_model(beam_size=16, new_item_fraction=0.0)
  plain.set_item_codes(codes, trained)
  got = nnx.jit(lambda m, b: m.recommend(b, k))(plain, batch)[0]
  np.testing.assert_array_equal(got, nnx.jit(lambda m, b: m.recommend(b, k))(make_model(beam_size=16), batch)[0])
  with pytest.raises(ValueError, match="new_item_fraction"):
    make_model(new_item_fraction=1.5)


def test_kv_cache_decoding_equals_full_forward(either):
  wide = either
  batch = eval_batch()
  codes = jnp.asarray(catalogue_codes()[[4, 0, 9]])  # a target tuple per row

  def both(model, batch, codes):
    enc, valid = model.encode_batch(batch)
    full = model.decode(enc, valid, codes)  # [B, C, K]
    group = 2  # two "beams" per row share the encoder
    rows_codes = jnp.repeat(codes, group, axis=0)
    context = model.start_decoding(enc, valid)
    cache, steps = model.init_cache(3 * group), []
    for level in range(C):
      prev = rows_codes[:, level - 1] if level else jnp.zeros((3 * group,), jnp.int32)
      log_probs, cache = model.decode_step(level, prev, cache, context)
      steps.append(log_probs)
    return full, jnp.stack(steps, axis=1)

  full, cached = nnx.jit(both)(wide, batch, codes)
  np.testing.assert_allclose(jnp.repeat(full, 2, axis=0), cached, rtol=1e-5, atol=1e-5)


def test_decoder_is_causal(wide):
  enc, valid = nnx.jit(lambda m, b: m.encode_batch(b))(wide, eval_batch())
  x = jax.random.normal(jax.random.key(0), (3, C, 32))
  t = 1
  cross = nnx.jit(lambda m: m.cross_context(enc, valid))(wide)
  grad = nnx.jit(lambda m, x: jax.grad(lambda x: m.decoder_hidden(x, enc, cross)[:, t].sum())(x))(wide, x)
  assert float(jnp.abs(grad[:, t + 1 :]).max()) == 0.0
  assert float(jnp.abs(grad[:, : t + 1]).min(axis=-1).max()) > 0.0


def test_relative_position_buckets_by_hand():
  rel = jnp.array([0, -1, 1, -7, -8, -16, -100, -1000, 20, 7])  # key - query
  # bidirectional, 32 buckets: 16 per side, exact below 8, then 8 + floor(ln(n/8) / ln(16) * 8) capped at 15
  # n=16: 8 + floor(0.25 * 8) = 10; n=100: 8 + floor(0.911 * 8) = 15; n=20 after the query: 16 + 8 + 2
  np.testing.assert_array_equal(relative_position_bucket(rel, bidirectional=True), [0, 1, 17, 7, 8, 10, 15, 15, 26, 23])
  # causal: keys after the query → 0; exact below 16, then 16 + floor(ln(n/16) / ln(8) * 16) capped at 31
  # n=32: 16 + floor(16/3) = 21; n=200: 31
  rel = jnp.array([3, 0, -5, -16, -32, -200])
  np.testing.assert_array_equal(relative_position_bucket(rel, bidirectional=False), [0, 0, 5, 16, 21, 31])


def test_encoder_tokens_layout(wide):
  tokens = np.asarray(wide.encoder_tokens(jnp.asarray(eval_batch()["history"]), jnp.array([0, 5, 13])))
  codes = catalogue_codes()
  assert tokens.shape == (3, 1 + L * C)
  user = 1 + C * K + 13 % 7
  np.testing.assert_array_equal(tokens[2], [0] * 9 + [user] + list(1 + K * np.arange(C) + codes[6]))
  assert tokens[1, 0] == 1 + C * K + 5 and (tokens[1, 1:] > 0).all()


def test_set_item_codes_errors(wide):
  model = wide
  codes = catalogue_codes()
  with pytest.raises(ItemCodesError, match=r"expects \[12, 3\]"):
    model.set_item_codes(codes[:, :2])
  with pytest.raises(ItemCodesError, match="expects"):
    model.set_item_codes(codes[:7])
  bad = codes.copy()
  bad[5, 1] = K
  with pytest.raises(ItemCodesError, match=r"item 6 has code 4 at level 1, outside \[0, 4\)"):
    model.set_item_codes(bad)
  bad[5, 1] = -1
  with pytest.raises(ItemCodesError, match="outside"):
    model.set_item_codes(bad)
  dup = codes.copy()
  dup[:, 2] = 0
  with pytest.raises(ItemCodesError, match="collision digit"):
    model.set_item_codes(dup)
  with pytest.raises(ItemCodesError, match="integers"):
    model.set_item_codes(codes.astype(np.float32))
  # [N+1, C] with a padding row is the same table; a rejected table left the model unchanged
  before = int(model.codes_hash[...])
  model.set_item_codes(np.concatenate([np.full((1, C), 9), codes]))
  assert int(model.codes_hash[...]) == before != 0
  np.testing.assert_array_equal(model.item_codes[...][1:], codes)


def test_tables_handle_dead_beams_and_tiny_catalogues():
  """Two items, beam 5: three beams have no valid continuation; the search still returns both items."""
  codes = np.array([[0, 0], [0, 3]])
  tables = jax.tree.map(jnp.asarray, bs.build_tables(np.concatenate([[[0, 0]], codes]), K))

  def step(level, prev, cache):
    assert prev.shape == (1, 1 if level == 0 else 5)  # one live beam at level 0, then the width
    return jax.nn.log_softmax(jnp.broadcast_to(jnp.arange(K, dtype=jnp.float32), prev.shape + (K,))), cache

  result = bs.beam_search(step, (), tables, batch_size=1, beam_size=5, k=3)
  np.testing.assert_array_equal(result.items[0], [2, 1, -1])
  np.testing.assert_array_equal(result.codes[0, :2], [[0, 3], [0, 0]])
  assert np.isneginf(float(result.scores[0, 2]))


def test_item_causal_encoder_hides_later_items(causal, wide):
  """item_causal: an encoder token's output depends on its own and earlier items only; the paper's
  bidirectional encoder sees the whole history."""
  batch = eval_batch()
  changed = {**batch, "history": batch["history"].copy()}
  changed["history"][:, -1] = [9, 10, 11]  # a different newest item in every row
  tokens = 1 + (L - 1) * C  # the user token and the first L-1 items' tokens
  enc = nnx.jit(lambda m, b: m.encode_batch(b))
  for model, same in ((causal, True), (wide, False)):
    (a, real), (b, _) = enc(model, batch), enc(model, changed)
    a, b, real = np.asarray(a), np.asarray(b), np.asarray(real)[:, :tokens]  # padding outputs are never read
    assert real.sum() == (1 + C) + (1 + 3 * C) + 1  # user tokens and the codes of items 3; 1, 2, 4
    assert np.allclose(a[:, :tokens][real], b[:, :tokens][real], atol=1e-6) == same
    assert not np.allclose(a[:, tokens:], b[:, tokens:], atol=1e-3)


def test_item_causal_loss_trains_every_position_as_its_own_prefix(causal):
  """One item_causal pass scores every position's next item: the loss equals the mean, over the real targets,
  of -log p(target | that prefix) / C, each prefix scored alone (left-padded to L, decoded after its last item)."""
  walk = np.array([[0, 3, 5, 2, 8], [1, 4, 6, 7, 12], [0, 0, 0, 9, 11]], np.int32)
  user = np.array([0, 5, 13], np.int32)
  got, aux = nnx.jit(lambda m, b: m.loss(b))(causal, {"inputs": walk[:, :-1], "targets": walk[:, 1:], "user": user})
  score = nnx.jit(lambda m, b, i: m.item_log_probs(b, i))
  nll = []
  for row in range(3):
    for t in range(L):
      if walk[row, t] == 0:
        continue
      history = np.zeros((1, L), np.int32)
      history[0, L - 1 - t :] = walk[row, : t + 1]
      target = walk[row, t + 1 : t + 2][None]
      nll.append(-float(score(causal, {"history": history, "user": user[row : row + 1]}, target)[0, 0]) / C)
  assert float(aux["rows"]) == len(nll) == 8  # a target after padding (row 0's first) is no target
  np.testing.assert_allclose(float(got), np.mean(nll), rtol=1e-5)


def test_allowed_codes_by_hand():
  """Items 1..4 = (0,0,0) (0,1,0) (1,0,0) (1,0,1). Target 2 after a window [1, 3, 4]: level 0 keeps code 0
  (item 2 under it) and drops code 1 (items 3 and 4 both seen, for the last target); level 1 keeps code 1
  (own) and drops 0 (item 1 seen); level 2 keeps its own code. Codes of no item are never allowed."""
  codes = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 1]])
  model = make_model(num_items=4, codes=codes, item_causal=True, mask_seen=True)
  window = jnp.array([[1, 3, 4]], jnp.int32)
  visible = jnp.tril(jnp.ones((3, 3), bool))  # target t sees window items <= t
  allowed = np.asarray(model.allowed_codes(jnp.array([[2, 2, 2]], jnp.int32), window, visible))[0]
  want_level0 = [[True, True, False, False], [True, True, False, False], [True, False, False, False]]
  np.testing.assert_array_equal(allowed[:, 0], want_level0)  # after items 1 / 1, 3 / 1, 3, 4
  np.testing.assert_array_equal(allowed[:, 1], [[False, True, False, False]] * 3)
  np.testing.assert_array_equal(allowed[:, 2], [[True, False, False, False]] * 3)
  # no window: every real item's codes
  everything = np.asarray(model.allowed_codes(jnp.array([[3]], jnp.int32), jnp.zeros((1, 1), jnp.int32)))[0, 0]
  np.testing.assert_array_equal(everything[:, :2], [[True, True], [True, False], [True, True]])


@pytest.mark.parametrize("item_causal", [False, True])
def test_learns_planted_next_item_rule(item_causal):
  """64 items, base-4 codes; the next item is a fixed random permutation of the last one."""
  n, steps = 64, 120
  codes = np.stack([(np.arange(n) // K ** (C - 1 - l)) % K for l in range(C)], axis=1)
  successor = np.random.default_rng(0).permutation(n) + 1  # item i → successor[i - 1]
  model = make_model(num_items=n, codes=codes, beam_size=10, dropout=0.0, item_causal=item_causal)
  model.train()

  def chains(rng, rows):
    walk = np.zeros((rows, L + 1), np.int32)
    walk[:, 0] = rng.integers(1, n + 1, rows)
    for t in range(1, L + 1):
      walk[:, t] = successor[walk[:, t - 1] - 1]
    walk[: rows // 4, 0] = 0  # some left-padded rows
    return walk

  graphdef, params, other = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def train_step(params, opt, walk, user):
    def loss_fn(params):
      batch = {"inputs": walk[:, :-1], "targets": walk[:, 1:], "user": user}
      return nnx.merge(graphdef, params, other).loss(batch)[0]

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  rng = np.random.default_rng(1)
  for _ in range(steps):
    walk = chains(rng, 64)
    params, opt, loss = train_step(params, opt, walk, rng.integers(0, 100, 64).astype(np.int32))
  nnx.update(model, params)
  model.eval()
  walk = chains(np.random.default_rng(2), 128)
  batch = {"history": walk[:, :-1], "seen": walk[:, :-1], "user": np.arange(128, dtype=np.int32)}
  items, _ = nnx.jit(lambda m, b: m.recommend(b, 10))(model, batch)
  recall = float((np.asarray(items) == walk[:, -1:]).any(1).mean())
  # random guessing: ~10/60
  assert recall > 0.9, (recall, float(loss))


def test_allowed_codes_with_items_before_the_window_by_hand():
  """Items as above. Target 2 after window [3] with item 4 before it: level 0 drops code 1 (3 seen in the window,
  4 before it) and level 1 drops code 0 (item 1 before). Item 3 both before and in the window counts once:
  code 1 keeps item 4 (one of its two items seen)."""
  codes = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 1]])
  model = make_model(num_items=4, codes=codes, item_causal=True, mask_seen=True)
  target, window, visible = jnp.array([[2]], jnp.int32), jnp.array([[3]], jnp.int32), jnp.ones((1, 1), bool)
  allowed = np.asarray(model.allowed_codes(target, window, visible, jnp.array([[4, 1, 0]], jnp.int32)))[0, 0]
  np.testing.assert_array_equal(allowed[:2], [[True, False, False, False], [False, True, False, False]])
  twice = np.asarray(model.allowed_codes(target, window, visible, jnp.array([[3, 0, 0]], jnp.int32)))[0, 0]
  np.testing.assert_array_equal(twice[0], [True, True, False, False])


def test_allowed_codes_before_plus_window_equal_the_whole_history():
  """For every target position, (window up to it) + (items before the window) gives the mask of that whole
  prefix of the history, as the search builds it from `seen`; repeats included."""
  model = make_model(item_causal=True, mask_seen=True)
  rng = np.random.default_rng(3)
  rows, P = 6, 5
  history = rng.integers(1, 8, (rows, P + L + 1)).astype(np.int32)  # few items: many repeats and seen prefixes
  history[0, : P + 2] = 0  # a short user: padding before and in the window
  before, window, targets = history[:, :P], history[:, P : P + L], history[:, P + 1 :]
  visible = jnp.tril(jnp.ones((L, L), bool))
  got = np.asarray(model.allowed_codes(jnp.asarray(targets), jnp.asarray(window), visible, jnp.asarray(before)))
  for t in range(L):
    want = np.asarray(model.allowed_codes(jnp.asarray(targets[:, t : t + 1]), jnp.asarray(history[:, : P + t + 1])))
    np.testing.assert_array_equal(got[:, t], want[:, 0], err_msg=f"target position {t}")


def test_mask_history_needs_mask_seen():
  with pytest.raises(ValueError, match="mask_seen=True"):
    make_model(mask_history=True)
