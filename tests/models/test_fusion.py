"""Fusion variants: shapes, masks (a missing modality's input cannot reach the output or its gradient), numerics
against a plain NumPy float64 forward pass written from the parameter layout, and clear shape errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genrec.models.fusion import VARIANTS, Fusion, FusionConfig

DIMS = {"text": 12, "image": 8, "genre": 5}
B, D = 6, 16
# rows: all present, no image, text only, genre only, image + genre, all present
PRESENT = np.array([[1, 1, 1], [1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1], [1, 1, 1]], bool)


def inputs(seed=0):
  rng = np.random.default_rng(seed)
  return {m: rng.normal(size=(B, d)).astype(np.float32) for m, d in DIMS.items()}


@pytest.fixture(scope="module", params=VARIANTS)
def fuser(request):
  cfg = FusionConfig(variant=request.param, dim=D, hidden_dim=24, num_heads=2, num_experts=3)
  return nnx.jit(lambda: Fusion(cfg, DIMS, rngs=nnx.Rngs(request.param_index)))()  # one compile, not one per op


@jax.jit
def _apply(graphdef, state, xs, present):
  return nnx.merge(graphdef, state)(xs, present)


@jax.jit
def _grad(graphdef, state, xs, present, probe):
  return jax.grad(lambda x: (nnx.merge(graphdef, state)(x, present) * probe).sum())(xs)


def run(fuser, xs, present):
  """The fuser's forward, jitted (eager dispatch compiles every op for every new shape: far slower here)."""
  return np.asarray(_apply(*nnx.split(fuser), {m: jnp.asarray(v) for m, v in xs.items()}, jnp.asarray(present)))


# ---- an independent reference: NumPy float64 from the parameter tree
def np_ln(x, p, eps=1e-6):
  mu = x.mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * p["scale"] + p["bias"]


def np_gelu(x):  # the tanh approximation (jax.nn.gelu's default)
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def np_lin(x, p):
  return x @ p["kernel"] + (p["bias"] if "bias" in p else 0.0)


def reference(fuser, xs, present):
  p = jax.tree.map(lambda v: np.asarray(v, np.float64), nnx.to_pure_dict(nnx.state(fuser, nnx.Param)))
  variant, names = fuser.cfg.variant, list(DIMS)
  out = np.zeros((B, D))
  for b in range(B):
    here = [m for i, m in enumerate(names) if present[b, i]]
    x = {m: xs[m][b].astype(np.float64) for m in here}
    if variant == "concat":
      flat = np.concatenate([x[m] if m in here else np.zeros(DIMS[m]) for m in names] + [present[b] * 1.0])
      out[b] = np_lin(np_gelu(np_lin(flat, p["up"])), p["down"])
    elif variant == "gated":
      h = np.stack([np_lin(x[m], p["proj"][m]) for m in here])
      s = np_lin(np.tanh(h), p["score"])[:, 0]
      g = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
      out[b] = np_ln(g @ h, p["norm"])
    elif variant == "xattn":
      tok = np.stack([np_lin(x[m], p["proj"][m]) + p["type_MxD"][names.index(m)] for m in here])
      tok = np_ln(tok, p["norm"])
      q0 = p["query_D"]
      a = p["attn"]
      heads, hd = 2, D // 2
      q = np_lin(q0, a["q"]).reshape(heads, hd)
      k = np_lin(tok, a["k"]).reshape(len(here), heads, hd)
      v = np_lin(tok, a["v"]).reshape(len(here), heads, hd)
      s = np.einsum("hd,shd->hs", q, k) / np.sqrt(hd)
      w = np.exp(s - s.max(-1, keepdims=True))
      w = w / w.sum(-1, keepdims=True)
      h = q0 + np_lin(np.einsum("hs,shd->hd", w, v).reshape(D), a["o"])
      m = p["mlp"]
      out[b] = h + np_lin(np_gelu(np_lin(np_ln(h, p["mlp_norm"]), m["up"])), m["down"])
    else:
      outs = []
      for m in here:
        e = p["experts"][m]
        gate = np_lin(x[m], e["gate"])
        gate = np.exp(gate - gate.max()) / np.exp(gate - gate.max()).sum()
        outs.append(np.einsum("k,ko->o", gate, np.einsum("ki,kio->ko", x[m][None] - e["b_KxI"], e["w_KxIxO"])))
      out[b] = np.mean(outs, axis=0)
  return out


def test_shapes_and_reference_numerics(fuser):
  xs = inputs()
  if fuser.cfg.variant == "moe":  # zero-initialised gate and bias: perturb them so the test can see them
    rng = np.random.default_rng(2)
    for e in fuser.experts.values():
      e.gate.kernel[...] = jnp.asarray(rng.normal(size=e.gate.kernel.shape), jnp.float32)
      e.b_KxI[...] = jnp.asarray(rng.normal(size=e.b_KxI.shape), jnp.float32)
  out = run(fuser, xs, PRESENT)
  assert out.shape == (B, D) and np.isfinite(out).all()
  ref = reference(fuser, xs, PRESENT)
  err = np.abs(out - ref).max()
  print(f"{fuser.cfg.variant}: max |fused - numpy float64| = {err:.2e}")
  assert err < 1e-5, err


def test_missing_modality_cannot_reach_the_output(fuser):
  """Per modality: absent rows' inputs replaced by huge values (one by NaN) or shifted leave those rows exactly
  unchanged, while shifting present rows changes them; all variants of the batch in one call."""
  xs, rng = inputs(), np.random.default_rng(1)
  variants = [xs]
  for i, m in enumerate(DIMS):
    absent = ~PRESENT[:, i]
    noisy = xs[m].copy()
    noisy[absent] = rng.normal(size=noisy[absent].shape) * 100
    noisy[np.flatnonzero(absent)[:1]] = np.nan
    variants += [{**xs, m: noisy}, {**xs, m: xs[m] + 1.0}]
  stacked = {m: np.concatenate([v[m] for v in variants]) for m in DIMS}
  out = run(fuser, stacked, np.tile(PRESENT, (len(variants), 1))).reshape(len(variants), B, D)
  base = out[0]
  for i, m in enumerate(DIMS):
    absent = ~PRESENT[:, i]
    noisy, shifted = out[1 + 2 * i], out[2 + 2 * i]
    np.testing.assert_array_equal(noisy[absent], base[absent])
    np.testing.assert_array_equal(shifted[absent], base[absent])
    assert (np.abs(shifted - base).max(-1)[~absent] > 1e-4).all()  # present inputs do matter
  probe = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)  # not .sum(): a LayerNorm output sums to a constant
  grads = _grad(*nnx.split(fuser), {m: jnp.asarray(v) for m, v in xs.items()}, jnp.asarray(PRESENT), probe)
  for i, m in enumerate(DIMS):
    g = np.asarray(grads[m])
    assert (g[~PRESENT[:, i]] == 0).all() and (np.abs(g[PRESENT[:, i]]).sum(-1) > 0).all()


def test_rows_are_independent(fuser):
  xs = inputs()
  full = run(fuser, xs, PRESENT)
  one = run(fuser, {m: v[2:3] for m, v in xs.items()}, PRESENT[2:3])
  np.testing.assert_allclose(one[0], full[2], atol=1e-5)


def test_bad_inputs_name_the_modality_and_both_widths():
  fuser = nnx.eval_shape(
    lambda: Fusion(FusionConfig(variant="gated", dim=8), {"text": 12, "genre": 5}, rngs=nnx.Rngs(0))
  )  # the checks run before any arithmetic
  good = {"text": jnp.zeros((2, 12)), "genre": jnp.zeros((2, 5))}
  present = jnp.ones((2, 2), bool)
  with pytest.raises(ValueError, match=r"modality 'text' has input width 384.*expects width 12"):
    fuser({**good, "text": jnp.zeros((2, 384))}, present)
  with pytest.raises(ValueError, match=r"no input for modality 'genre'"):
    fuser({"text": good["text"]}, present)
  with pytest.raises(ValueError, match=r"presence mask of shape \(2, 3\); expected \[B, 2\]"):
    fuser(good, jnp.ones((2, 3), bool))
  with pytest.raises(ValueError, match="variant 'sum' is not one of"):
    Fusion(FusionConfig(variant="sum"), {"text": 4}, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"widths must be >= 1.*'image': 0"):
    Fusion(FusionConfig(), {"text": 4, "image": 0}, rngs=nnx.Rngs(0))
