"""A decoder-only LLM of the Llama / Qwen2 families: the backbone of the LLM-CF models (CoLLM, TALLRec, LLaRA).

Protocol:
  lm = DecoderLM(cfg, rngs=nnx.Rngs(0))                 # or load_llm(hf_folder) (hf_import.py)
  logits_BxLxV = lm(ids_BxL, valid_BxL)
  embeds_BxLxD = lm.embed(ids_BxL)                       # callers may overwrite rows (soft prompts, CF tokens)
  h_BxLxD = lm.hidden(embeds_BxLxD, valid_BxL)           # after the final RMSNorm, as HF's last_hidden_state
  logits_BxLxV = lm.logits(h_BxLxD)
  cache = lm.init_cache(batch, max_len); logits_BxTxV, cache = lm.decode_step(ids_BxT, cache, valid_BxT)
  new_ids_BxN = generate(lm, ids_BxL, valid_BxL, max_new_tokens=N)   # greedy, KV-cached

Padding may sit anywhere (left for generation, right for training): `valid_BxL` marks real tokens, a token's
position id is the count of real tokens before it, and no real token ever attends to a pad, so padding never
changes a real position's output. Blocks are pre-norm: RMSNorm → grouped-query attention (RoPE, optional q/k/v
bias) → residual → RMSNorm → SwiGLU MLP → residual; then a final RMSNorm and a tied or separate lm_head.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.models import layers
from genrec.models.layers.rope import RopeConfig, apply_rope, inverse_frequencies

FAMILIES = ("llama", "qwen2")
init_normal = nnx.initializers.normal(0.02)  # HF's initializer_range for both families


@dataclasses.dataclass(frozen=True)
class LLMConfig:
  """Shape of a Llama/Qwen2 decoder. The defaults are the tiny test model (`LLMConfig.tiny()`)."""

  family: str = "llama"  # the HF model_type: llama | qwen2
  vocab_size: int = 256
  hidden: int = 64
  layers: int = 2
  heads: int = 4
  kv_heads: int = 2  # grouped-query attention: heads / kv_heads query heads share a k/v head
  head_dim: int | None = None  # None: hidden // heads
  intermediate: int = 128
  rms_norm_eps: float = 1e-6
  rope: RopeConfig = RopeConfig()
  qkv_bias: bool = False  # Qwen2: True; Llama: config.json attention_bias
  o_bias: bool = False  # Llama's attention_bias also biases o_proj; Qwen2's o_proj has none
  mlp_bias: bool = False
  tie_embeddings: bool = False  # logits from the token embedding table (no lm_head)
  max_position: int = 2048

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"LLMConfig: family {self.family!r} is not one of {FAMILIES}")
    if self.heads % self.kv_heads:
      raise ValueError(f"LLMConfig: heads={self.heads} is not a multiple of kv_heads={self.kv_heads}")
    if self.head_dim is None and self.hidden % self.heads:
      raise ValueError(f"LLMConfig: hidden={self.hidden} is not divisible by heads={self.heads}; set head_dim")

  @property
  def dim_head(self) -> int:
    return self.head_dim or self.hidden // self.heads

  @classmethod
  def tiny(cls) -> LLMConfig:
    """vocab 256, d 64, 2 layers, 4 heads over 2 k/v heads, MLP 128: for tests."""
    return cls()

  @classmethod
  def qwen2_0_5b(cls) -> LLMConfig:
    """Qwen2-0.5B's shape (494M parameters): for benchmarks and memory estimates."""
    return cls(
      family="qwen2",
      vocab_size=151936,
      hidden=896,
      layers=24,
      heads=14,
      kv_heads=2,
      intermediate=4864,
      rms_norm_eps=1e-6,
      rope=RopeConfig(theta=1000000.0),
      qkv_bias=True,
      tie_embeddings=True,
      max_position=32768,
    )

  @classmethod
  def from_hf_config(cls, hf: dict, **overrides) -> LLMConfig:
    """Reads a Hugging Face `config.json` (as a dict) of model_type llama or qwen2."""
    kind = hf.get("model_type")
    if kind not in FAMILIES:
      raise ValueError(f"config.json model_type {kind!r} is not supported; supported model types: {FAMILIES}")
    missing = [
      k
      for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
      if k not in hf
    ]
    if missing:
      raise ValueError(f"config.json lacks {missing}; these fix the {kind} model's shape")
    if hf.get("hidden_act", "silu") != "silu":
      raise ValueError(f"config.json hidden_act {hf['hidden_act']!r}: only 'silu' (SwiGLU) is supported")
    if kind == "qwen2" and hf.get("use_sliding_window"):
      raise ValueError("config.json use_sliding_window=true: sliding-window attention is not supported")
    hidden, heads = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim")
    bias = kind == "qwen2" or bool(hf.get("attention_bias", False))
    fields = dict(
      family=kind,
      vocab_size=hf["vocab_size"],
      hidden=hidden,
      layers=hf["num_hidden_layers"],
      heads=heads,
      kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=None if head_dim in (None, hidden // heads) else head_dim,
      intermediate=hf["intermediate_size"],
      rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
      rope=RopeConfig.from_hf(hf),
      qkv_bias=bias,
      o_bias=kind == "llama" and bias,
      mlp_bias=bool(hf.get("mlp_bias", False)),
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
      max_position=hf.get("max_position_embeddings", 2048),
    )
    return cls(**{**fields, **overrides})

  def to_hf_config(self) -> dict:
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[self.family]
    out = {
      "model_type": self.family,
      "architectures": [arch],
      "vocab_size": self.vocab_size,
      "hidden_size": self.hidden,
      "num_hidden_layers": self.layers,
      "num_attention_heads": self.heads,
      "num_key_value_heads": self.kv_heads,
      "intermediate_size": self.intermediate,
      "hidden_act": "silu",
      "rms_norm_eps": self.rms_norm_eps,
      "tie_word_embeddings": self.tie_embeddings,
      "max_position_embeddings": self.max_position,
      **self.rope.to_hf(),
    }
    if self.head_dim is not None:
      out["head_dim"] = self.head_dim
    if self.family == "llama":
      out.update(attention_bias=self.qkv_bias, mlp_bias=self.mlp_bias)
    return out


class KVCache(NamedTuple):
  """Per layer keys/values [B, S, kv_heads, head_dim]; which slots hold real tokens; the next slot to write;
  each row's next position id. A pytree: pass it in and out of jitted steps."""

  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  valid_BxS: jax.Array
  index: jax.Array
  next_pos_B: jax.Array


def grouped_attention(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, mask_BxLxS):
  """Softmax attention (float32 logits) where query head h reads k/v head h // (H / G), as HF's repeat_kv."""
  b, length, heads, dim = q_BxLxHxK.shape
  groups = k_BxSxGxK.shape[2]
  q = q_BxLxHxK.reshape(b, length, groups, heads // groups, dim)
  logits = jnp.einsum("blgrk,bsgk->bgrls", q, k_BxSxGxK).astype(jnp.float32) * dim**-0.5
  weights, sums = layers.softmax_parts(logits, mask_BxLxS[:, None, None])
  out = jnp.einsum("bgrls,bsgk->bgrlk", weights.astype(v_BxSxGxK.dtype), v_BxSxGxK).astype(jnp.float32) / sums
  return jnp.transpose(out, (0, 3, 1, 2, 4)).reshape(b, length, heads * dim).astype(v_BxSxGxK.dtype)


class Attention(nnx.Module):
  def __init__(self, cfg: LLMConfig, *, rngs: nnx.Rngs):
    self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.dim_head
    d, q_dim, kv_dim = cfg.hidden, cfg.heads * cfg.dim_head, cfg.kv_heads * cfg.dim_head
    proj = functools.partial(layers.dense, kernel_init=init_normal, rngs=rngs)
    self.q = proj(d, q_dim, ("embed", "heads"), use_bias=cfg.qkv_bias)
    self.k = proj(d, kv_dim, ("embed", "heads"), use_bias=cfg.qkv_bias)
    self.v = proj(d, kv_dim, ("embed", "heads"), use_bias=cfg.qkv_bias)
    self.o = proj(q_dim, d, ("heads", "embed"), use_bias=cfg.o_bias)

  def __call__(self, x_BxLxD, positions_BxL, inv_freq, mask_BxLxS, kv=None, index=None):
    """With `kv` (k, v) [B, S, G, K] the new keys/values are written at slot `index` and attention runs over
    all S slots (`mask_BxLxS` hides the unwritten ones); returns (out, updated kv or None)."""
    split = lambda t, n: t.reshape(*t.shape[:-1], n, self.head_dim)
    q = apply_rope(split(self.q(x_BxLxD), self.heads), positions_BxL, inv_freq)
    k = apply_rope(split(self.k(x_BxLxD), self.kv_heads), positions_BxL, inv_freq)
    v = split(self.v(x_BxLxD), self.kv_heads)
    if kv is not None:
      start = (0, index, 0, 0)
      k = jax.lax.dynamic_update_slice(kv[0], k.astype(kv[0].dtype), start)
      v = jax.lax.dynamic_update_slice(kv[1], v.astype(kv[1].dtype), start)
      kv = (k, v)
    return self.o(grouped_attention(q, k, v, mask_BxLxS)), kv


class MLP(nnx.Module):
  """SwiGLU: down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg: LLMConfig, *, rngs: nnx.Rngs):
    proj = functools.partial(layers.dense, kernel_init=init_normal, use_bias=cfg.mlp_bias, rngs=rngs)
    self.gate = proj(cfg.hidden, cfg.intermediate, ("embed", "mlp"))
    self.up = proj(cfg.hidden, cfg.intermediate, ("embed", "mlp"))
    self.down = proj(cfg.intermediate, cfg.hidden, ("mlp", "embed"))

  def __call__(self, x_BxLxD):
    return self.down(jax.nn.silu(self.gate(x_BxLxD)) * self.up(x_BxLxD))


class Block(nnx.Module):
  def __init__(self, cfg: LLMConfig, *, rngs: nnx.Rngs):
    self.attn_norm = layers.RMSNorm(cfg.hidden, eps=cfg.rms_norm_eps, rngs=rngs)
    self.attn = Attention(cfg, rngs=rngs)
    self.mlp_norm = layers.RMSNorm(cfg.hidden, eps=cfg.rms_norm_eps, rngs=rngs)
    self.mlp = MLP(cfg, rngs=rngs)

  def __call__(self, x_BxLxD, positions_BxL, inv_freq, mask_BxLxS, kv=None, index=None):
    out, kv = self.attn(self.attn_norm(x_BxLxD), positions_BxL, inv_freq, mask_BxLxS, kv, index)
    x_BxLxD = x_BxLxD + out
    return x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD)), kv


def _all_valid(x_BxL):
  return jnp.ones(x_BxL.shape[:2], bool)


class DecoderLM(nnx.Module):
  def __init__(self, cfg: LLMConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.tokens = layers.Embed(cfg.vocab_size, cfg.hidden, ("vocab", "embed"), stddev=0.02, rngs=rngs)
    self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.layers)])
    self.norm = layers.RMSNorm(cfg.hidden, eps=cfg.rms_norm_eps, rngs=rngs)
    self.lm_head = (
      None
      if cfg.tie_embeddings
      else layers.dense(
        cfg.hidden, cfg.vocab_size, ("embed", "vocab"), use_bias=False, kernel_init=init_normal, rngs=rngs
      )
    )

  def embed(self, ids_BxL: jax.Array) -> jax.Array:
    return self.tokens(ids_BxL)

  def logits(self, h_BxLxD: jax.Array) -> jax.Array:
    return self.tokens.attend(h_BxLxD) if self.lm_head is None else self.lm_head(h_BxLxD)

  def hidden(self, embeds_BxLxD: jax.Array, valid_BxL: jax.Array | None = None) -> jax.Array:
    """Runs the stack on input embeddings; returns the final-norm hidden states [B, L, D]."""
    valid_BxL = _all_valid(embeds_BxLxD) if valid_BxL is None else valid_BxL.astype(bool)
    length = embeds_BxLxD.shape[1]
    positions_BxL = jnp.maximum(jnp.cumsum(valid_BxL, axis=1) - 1, 0)
    causal_1xLxL = jnp.tril(jnp.ones((length, length), bool))[None]
    mask_BxLxL = causal_1xLxL & valid_BxL[:, None, :]
    inv_freq = inverse_frequencies(self.cfg.dim_head, self.cfg.rope)
    x_BxLxD = embeds_BxLxD
    for block in self.layers:
      x_BxLxD, _ = block(x_BxLxD, positions_BxL, inv_freq, mask_BxLxL)
    return self.norm(x_BxLxD)

  def __call__(self, ids_BxL: jax.Array, valid_BxL: jax.Array | None = None) -> jax.Array:
    return self.logits(self.hidden(self.embed(ids_BxL), valid_BxL))

  def init_cache(self, batch: int, max_len: int, dtype=None) -> KVCache:
    """An empty cache for `max_len` tokens per row (prompt, padding and generated tokens all take a slot)."""
    dtype = dtype or self.tokens.embedding.get_value().dtype
    shape = (batch, max_len, self.cfg.kv_heads, self.cfg.dim_head)
    zeros = tuple(jnp.zeros(shape, dtype) for _ in self.layers)
    return KVCache(
      zeros, zeros, jnp.zeros((batch, max_len), bool), jnp.zeros((), jnp.int32), jnp.zeros((batch,), jnp.int32)
    )

  def decode_hidden(self, ids_BxT, cache: KVCache, valid_BxT=None, *, embeds_BxTxD=None):
    """Appends T tokens (ids, or `embeds_BxTxD` instead) at slot `cache.index`; returns (h_BxTxD, cache).
    The caller keeps index + T within the cache's max_len (a write past the end is clamped by XLA)."""
    x_BxTxD = self.embed(ids_BxT) if embeds_BxTxD is None else embeds_BxTxD
    valid_BxT = _all_valid(x_BxTxD) if valid_BxT is None else valid_BxT.astype(bool)
    steps = x_BxTxD.shape[1]
    positions_BxT = jnp.maximum(cache.next_pos_B[:, None] + jnp.cumsum(valid_BxT, axis=1) - 1, 0)
    valid_BxS = jax.lax.dynamic_update_slice(cache.valid_BxS, valid_BxT, (0, cache.index))
    slots_1x1xS = jnp.arange(valid_BxS.shape[1])[None, None]
    query_slot_1xTx1 = (cache.index + jnp.arange(steps))[None, :, None]
    mask_BxTxS = (slots_1x1xS <= query_slot_1xTx1) & valid_BxS[:, None, :]
    inv_freq = inverse_frequencies(self.cfg.dim_head, self.cfg.rope)
    ks, vs = [], []
    for block, k, v in zip(self.layers, cache.k, cache.v):
      x_BxTxD, (k, v) = block(x_BxTxD, positions_BxT, inv_freq, mask_BxTxS, (k, v), cache.index)
      ks.append(k)
      vs.append(v)
    cache = KVCache(
      tuple(ks), tuple(vs), valid_BxS, cache.index + steps, cache.next_pos_B + valid_BxT.sum(1, dtype=jnp.int32)
    )
    return self.norm(x_BxTxD), cache

  def decode_step(self, ids_BxT, cache: KVCache, valid_BxT=None, *, embeds_BxTxD=None):
    """(logits_BxTxV, cache) for T new tokens; equals the full forward's logits at those positions."""
    h_BxTxD, cache = self.decode_hidden(ids_BxT, cache, valid_BxT, embeds_BxTxD=embeds_BxTxD)
    return self.logits(h_BxTxD), cache


@functools.partial(nnx.jit, static_argnames=("max_new_tokens",))
def generate(lm: DecoderLM, ids_BxL, valid_BxL=None, *, max_new_tokens: int, eos_id=-1, pad_id=0):
  """Greedy decoding with a KV cache: [B, max_new_tokens] new token ids. The prompt may be padded on either
  side; after a row emits `eos_id` (-1: none) its remaining slots hold `pad_id`. Compiled once per shape and
  max_new_tokens (eos_id and pad_id are traced)."""
  if max_new_tokens < 1:
    raise ValueError(f"generate: max_new_tokens must be >= 1, got {max_new_tokens}")
  batch, length = ids_BxL.shape
  valid_BxL = jnp.ones((batch, length), bool) if valid_BxL is None else valid_BxL.astype(bool)
  cache = lm.init_cache(batch, length + max_new_tokens)
  h_BxLxD, cache = lm.decode_hidden(ids_BxL, cache, valid_BxL)
  last_B = length - 1 - jnp.argmax(valid_BxL[:, ::-1], axis=1)
  h_Bx1xD = jnp.take_along_axis(h_BxLxD, last_B[:, None, None], axis=1)
  first_B = jnp.argmax(lm.logits(h_Bx1xD)[:, 0], axis=-1).astype(jnp.int32)

  def step(carry, _):
    token_B, done_B, cache = carry
    logits_Bx1xV, cache = lm.decode_step(token_B[:, None], cache)
    done_B = done_B | (token_B == eos_id)
    nxt_B = jnp.where(done_B, pad_id, jnp.argmax(logits_Bx1xV[:, 0], axis=-1)).astype(jnp.int32)
    return (nxt_B, done_B, cache), token_B

  init = (first_B, jnp.zeros((batch,), bool), cache)
  (last_token_B, _, _), tokens_NxB = jax.lax.scan(step, init, None, length=max_new_tokens - 1)
  return jnp.concatenate([tokens_NxB.T, last_token_B[:, None]], axis=1)
