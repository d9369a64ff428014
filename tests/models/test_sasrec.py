"""SASRec's options: history bias (only the window's items move, by recency), post- vs pre-norm blocks, init std,
input norm and embedding scale; the defaults build the original model; causality holds under every option."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genrec.config import ConfigError
from genrec.models.sasrec import SASRec, SASRecConfig, history_logit_bias

B, L, N = 3, 8, 20


def model_of(seed=0, **kw):
  cfg = SASRecConfig(num_items=N, max_len=L, dim=16, num_heads=2, mlp_dim=32, dropout=0.0, emb_dropout=0.0, **kw)
  return nnx.jit(lambda: SASRec(cfg, rngs=nnx.Rngs(params=seed, dropout=1)))()


def train_batch(seed=0):
  rng = np.random.default_rng(seed)
  ids = np.stack([rng.permutation(N)[: L + 1] + 1 for _ in range(B)]).astype(np.int32)
  ids[0, :3] = 0  # a left-padded row
  return {"inputs": ids[:, :-1], "targets": ids[:, 1:]}


def eval_batch(seed=0):
  tb = train_batch(seed)
  return {"history": tb["targets"], "seen": tb["targets"], "target": tb["targets"][:, -1]}


def scores_of(model, batch):
  return np.asarray(nnx.jit(lambda m, b: m.score(b))(model, batch))


def set_history_bias(model, values):
  model.history_bias[...] = jnp.asarray(values, jnp.float32)


def test_defaults_build_the_original_model():
  model = model_of()
  assert model.history_bias is None and model.input_norm is None and model.final_norm is not None
  assert not any(block.post_norm for block in model.blocks)


@pytest.mark.parametrize("kind", ["scalar", "recency"])
def test_history_bias_moves_only_history_items(kind):
  model = model_of(history_bias=kind)
  batch = eval_batch()
  before = scores_of(model, batch)  # the bias starts at zero
  set_history_bias(model, -3.0 - np.arange(model.history_bias.shape[0]))
  after = scores_of(model, batch)
  in_history = np.zeros((B, N + 1), bool)
  for b in range(B):
    in_history[b, batch["history"][b]] = True
  in_history[:, 0] = False
  changed = ~np.isclose(before, after) & np.isfinite(before)
  np.testing.assert_array_equal(changed, in_history)
  # the item d positions back from the end of the window gets table[d] (recency) or table[0] (scalar)
  for d in range(L - 3):
    item = batch["history"][0, L - 1 - d]
    expected = -3.0 - (d if kind == "recency" else 0)
    np.testing.assert_allclose(after[0, item] - before[0, item], expected, rtol=1e-5)


def test_history_bias_in_training_follows_each_position():
  ids = jnp.asarray([[0, 4, 2, 4, 7]])
  bias = np.asarray(history_logit_bias(ids, jnp.asarray([10.0, 20.0, 30.0]), jnp.arange(5), 9))
  assert bias.shape == (1, 5, 9) and not bias[0, 0].any()
  np.testing.assert_array_equal(bias[0, 2, [2, 4]], [10.0, 20.0])
  # item 4 repeats: its latest occurrence counts; distances past the table share its last entry
  np.testing.assert_array_equal(bias[0, 4, [2, 4, 7]], [30.0, 20.0, 10.0])
  assert np.count_nonzero(bias[0, 4]) == 3


def test_history_bias_is_learned_down_when_history_never_repeats():
  model = model_of(history_bias="scalar")
  batch = train_batch()
  grad = nnx.jit(lambda m, b: nnx.grad(lambda m: m.loss(b)[0])(m))(model, batch)
  # raising the score of items the next item never equals (no repeats) only raises the loss
  assert float(grad.history_bias[...][0]) > 0


def test_post_norm_differs_from_pre_norm_and_drops_the_final_norm():
  pre, post = model_of(), model_of(block="post_norm")
  assert post.final_norm is None and all(block.post_norm for block in post.blocks)
  batch = eval_batch()
  h_pre = np.asarray(nnx.jit(lambda m, b: m.query(b))(pre, batch))
  h_post = np.asarray(nnx.jit(lambda m, b: m.query(b))(post, batch))
  assert not np.allclose(h_pre, h_post, atol=1e-3)
  # each post-norm block ends in a LayerNorm (unit scale, zero bias at init): zero mean, unit variance
  np.testing.assert_allclose(h_post.mean(-1), 0.0, atol=1e-4)
  np.testing.assert_allclose(h_post.var(-1), 1.0, rtol=1e-3)


def test_init_std_is_honoured():
  model = model_of(init_std=0.02)
  tables = [model.item_emb.embedding[...], model.pos_emb.embedding[...]]
  first, last = model.blocks[0], model.blocks[-1]
  kernels = [first.attn.q.kernel[...], first.mlp.up.kernel[...], last.attn.o.kernel[...]]
  for w in tables + kernels:
    assert abs(float(jnp.std(w)) - 0.02) < 0.004 and abs(float(jnp.mean(w))) < 0.004
  default = model_of()
  assert float(jnp.std(default.blocks[0].mlp.up.kernel[...])) > 0.1  # xavier uniform for 16 x 32


def test_input_norm_and_emb_scale_change_the_encoding():
  batch = eval_batch()
  encode = lambda m: np.asarray(nnx.jit(lambda m, b: m.encode(b["history"]))(m, batch))
  base = encode(model_of())
  assert not np.allclose(base, encode(model_of(input_norm=True)), atol=1e-4)
  assert not np.allclose(base, encode(model_of(emb_scale=False)), atol=1e-4)


@pytest.mark.parametrize("kw", [{}, {"block": "post_norm", "input_norm": True, "init_std": 0.02}])
def test_causal(kw):
  """Changing the items after position t leaves the hidden states up to t unchanged."""
  model = model_of(**kw)
  ids = jnp.asarray(train_batch()["inputs"])
  t = 4
  changed = ids.at[:, t + 1 :].set((ids[:, t + 1 :] % N) + 1)
  encode = nnx.jit(lambda m, x: m.encode(x))
  a, b = np.asarray(encode(model, ids)), np.asarray(encode(model, changed))
  np.testing.assert_allclose(a[:, : t + 1], b[:, : t + 1], rtol=1e-5, atol=1e-6)
  assert not np.allclose(a[:, t + 1 :], b[:, t + 1 :], atol=1e-4)


def test_bad_options_are_config_errors():
  for kw in ({"block": "sandwich"}, {"history_bias": "global"}, {"init_std": -1.0}):
    with pytest.raises(ConfigError):
      SASRecConfig(**kw)
