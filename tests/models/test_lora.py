"""LoRA on the decoder: a fresh adapter changes nothing, merge/unmerge keep outputs, an optimizer over the
adapters alone leaves the base weights bit-for-bit, targets are checked, adapters carry logical axes."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from genrec.models.layers.lora import (
  LoRAConfig,
  LoRALinear,
  LoRAParam,
  apply_lora,
  merge_lora,
  trainable_filter,
  unmerge_lora,
)
from genrec.models.llm import DecoderLM, LLMConfig

CFG = LLMConfig(layers=1)
ALL = ("q", "k", "v", "o", "gate", "up", "down")
LORA = LoRAConfig(rank=4, alpha=8.0, targets=ALL)  # one adapter shape throughout: compiled forwards are reused
IDS = jnp.asarray(np.random.default_rng(0).integers(0, CFG.vocab_size, (2, 8)), jnp.int32)


@pytest.fixture(scope="module")
def base():
  return DecoderLM(CFG, rngs=nnx.Rngs(0))


@nnx.jit
def forward(lm, ids_BxL):
  return lm(ids_BxL)


def base_params(lm):
  return {
    p: np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(lm, nnx.Param)) if not isinstance(v, LoRAParam)
  }


def adapters(lm):
  return {p: np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(lm, LoRAParam))}


def test_fresh_adapter_leaves_outputs_unchanged_and_keeps_base_paths(base):
  lm = nnx.clone(base)
  before, paths = np.asarray(forward(lm, IDS)), set(base_params(lm))
  wrapped = apply_lora(lm, LORA, rngs=nnx.Rngs(1))
  assert sorted(wrapped) == sorted(
    f"layers.0.{m}" for m in ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")
  )
  assert set(base_params(lm)) == paths  # base weights keep their state paths (HF import, checkpoints)
  ad = adapters(lm)
  assert len(ad) == 2 * len(ALL)
  assert all(not v.any() for p, v in ad.items() if p[-1] == "lora_b")
  assert all(v.std() > 0 for p, v in ad.items() if p[-1] == "lora_a")
  np.testing.assert_array_equal(np.asarray(forward(lm, IDS)), before)
  q = lm.layers[0].attn.q
  assert q.lora_a.get_metadata()["out_sharding"] == ("embed", None)
  assert q.lora_b.get_metadata()["out_sharding"] == (None, "heads")
  assert lm.layers[0].mlp.down.lora_b.get_metadata()["out_sharding"] == (None, "embed")


def test_merge_and_unmerge_keep_outputs(base):
  lm = nnx.clone(base)
  plain = np.asarray(forward(lm, IDS))
  apply_lora(lm, LORA, rngs=nnx.Rngs(1))
  key = jax.random.key(2)
  for layer in (lm.layers[0].attn.q, lm.layers[0].attn.v, lm.layers[0].mlp.down):
    key, sub = jax.random.split(key)
    layer.lora_b[...] = 0.5 * jax.random.normal(sub, layer.lora_b.shape)
  kernel0 = np.asarray(lm.layers[0].attn.q.kernel.get_value())
  adapted = np.asarray(forward(lm, IDS))
  assert np.abs(adapted - plain).max() > 1e-2  # the adapter does something
  merge_lora(lm)
  assert lm.layers[0].attn.q.merged and not np.allclose(lm.layers[0].attn.q.kernel.get_value(), kernel0)
  merged = np.asarray(forward(lm, IDS))
  unmerge_lora(lm)
  unmerged = np.asarray(forward(lm, IDS))
  print(
    f"LoRA merged vs adapter path max abs diff {np.abs(merged - adapted).max():.2e}; unmerged "
    f"{np.abs(unmerged - adapted).max():.2e}"
  )
  np.testing.assert_allclose(merged, adapted, atol=1e-5)
  np.testing.assert_allclose(unmerged, adapted, atol=1e-5)
  np.testing.assert_allclose(lm.layers[0].attn.q.kernel.get_value(), kernel0, atol=1e-6)


def test_optimizer_over_adapters_only_leaves_base_weights_exactly_unchanged(base):
  lm = nnx.clone(base)
  lora = LORA
  apply_lora(lm, lora, rngs=nnx.Rngs(1))
  base0, ad0 = base_params(lm), adapters(lm)
  opt = nnx.Optimizer(lm, optax.adam(1e-2), wrt=trainable_filter(lora))
  targets = jnp.roll(IDS, -1, axis=1)

  @nnx.jit
  def step(lm, opt):
    def loss_fn(lm):
      return optax.softmax_cross_entropy_with_integer_labels(lm(IDS), targets).mean()

    loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, trainable_filter(lora)))(lm)
    opt.update(lm, grads)
    return loss

  losses = [float(step(lm, opt)) for _ in range(4)]
  assert losses[-1] < losses[0]
  base1, ad1 = base_params(lm), adapters(lm)
  assert base1.keys() == base0.keys() and all(np.array_equal(base1[p], base0[p]) for p in base0)
  assert all(not np.array_equal(ad1[p], ad0[p]) for p in ad0)  # both A and B moved
  assert trainable_filter(None) is nnx.Param


def test_dropout_acts_in_train_mode_only():
  layer = nnx.Linear(6, 5, rngs=nnx.Rngs(0))
  lora = LoRALinear(layer, LoRAConfig(rank=2, dropout=0.5), rngs=nnx.Rngs(1))
  lora.lora_b[...] = jnp.ones_like(lora.lora_b[...])
  x = jnp.ones((4, 6))
  call = nnx.jit(lambda m, x: m(x))
  assert not np.allclose(call(lora, x), call(lora, x))
  lora.eval()
  np.testing.assert_array_equal(call(lora, x), call(lora, x))


def test_bad_targets_and_config_are_named(base):
  lm = nnx.clone(base)
  with pytest.raises(
    ValueError,
    match=r"LoRA targets \['q_proj'\] name no linear layer of DecoderLM; .*"
    r"\['down', 'gate', 'k', 'lm_head', 'o', 'q', 'up', 'v'\]",
  ):
    apply_lora(lm, LoRAConfig(targets=("q", "q_proj")), rngs=nnx.Rngs(1))
  with pytest.raises(ValueError, match="rank must be >= 1"):
    LoRAConfig(rank=0)
