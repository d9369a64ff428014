"""A BERT encoder (Devlin et al., 2019) with sentence-transformers pooling, for embedding item text.

Protocol: `Bert(cfg)(ids_BxL, valid_BxL)` → hidden states [B, L, D]; `encode(ids_BxL, valid_BxL)` → one vector
per text [B, D], mean-pooled over the real tokens and L2-normalised (as sentence-transformers' Pooling +
Normalize modules). Padding is right or left, anywhere: a padded position never changes a real one.
Post-norm layers (LayerNorm after each residual), exact erf GELU, learned absolute positions — the layout of
Hugging Face `BertModel`, so its safetensors import by a name table (`hf_import.py`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.models import layers

ACTIVATIONS = {
  "gelu": functools.partial(jax.nn.gelu, approximate=False),  # BERT's GELU is the exact erf form
  "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
  "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
  "relu": jax.nn.relu,
}
POOLINGS = ("mean", "cls")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  vocab_size: int = 30522
  hidden: int = 384
  layers: int = 6
  heads: int = 12
  intermediate: int = 1536
  max_position: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  activation: str = "gelu"
  pad_token_id: int = 0
  dropout: float = 0.0  # an imported encoder runs for inference: HF's dropout rates are not copied
  pooling: str = "mean"  # "mean" over real tokens (sentence-transformers) or "cls" (first token)
  normalize: bool = True  # L2-normalise the pooled vector

  def __post_init__(self):
    if self.hidden % self.heads:
      raise ValueError(f"BertConfig: hidden={self.hidden} is not divisible by heads={self.heads}")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"BertConfig: activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
    if self.pooling not in POOLINGS:
      raise ValueError(f"BertConfig: pooling {self.pooling!r} is not one of {POOLINGS}")

  @classmethod
  def minilm_l6(cls) -> BertConfig:
    """all-MiniLM-L6-v2 (sentence-transformers): 6 layers, 384 wide, 12 heads, 22.7M parameters."""
    return cls()

  @classmethod
  def from_hf_config(cls, hf: dict, **overrides) -> BertConfig:
    """Reads a Hugging Face `config.json` (as a dict) of a BERT-family model (bert, minilm, …)."""
    kind = hf.get("model_type", "bert")
    if kind not in ("bert", "roberta", "xlm-roberta") and "BertModel" not in hf.get("architectures", []):
      raise ValueError(f"config.json describes a {kind!r} model; only BERT-architecture encoders are supported")
    if kind != "bert":
      raise ValueError(
        f"config.json model_type {kind!r}: RoBERTa offsets positions by pad_token_id+1, "
        "which this BERT import does not do"
      )
    position_type = hf.get("position_embedding_type", "absolute")
    if position_type != "absolute":
      raise ValueError(f"config.json position_embedding_type {position_type!r}: only 'absolute' is supported")
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads") if k not in hf]
    if missing:
      raise ValueError(f"config.json lacks {missing}; these fix the encoder's shape")
    fields = dict(
      vocab_size=hf["vocab_size"],
      hidden=hf["hidden_size"],
      layers=hf["num_hidden_layers"],
      heads=hf["num_attention_heads"],
      intermediate=hf.get("intermediate_size", 4 * hf["hidden_size"]),
      max_position=hf.get("max_position_embeddings", 512),
      type_vocab_size=hf.get("type_vocab_size", 2),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
      activation=hf.get("hidden_act", "gelu"),
      pad_token_id=hf.get("pad_token_id", 0) or 0,
    )
    return cls(**{**fields, **overrides})

  def to_hf_config(self) -> dict:
    return {
      "model_type": "bert",
      "architectures": ["BertModel"],
      "vocab_size": self.vocab_size,
      "hidden_size": self.hidden,
      "num_hidden_layers": self.layers,
      "num_attention_heads": self.heads,
      "intermediate_size": self.intermediate,
      "max_position_embeddings": self.max_position,
      "type_vocab_size": self.type_vocab_size,
      "layer_norm_eps": self.layer_norm_eps,
      "hidden_act": self.activation,
      "pad_token_id": self.pad_token_id,
    }


class BertEmbeddings(nnx.Module):
  """word + position + token type, then LayerNorm."""

  def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
    self.word = layers.Embed(cfg.vocab_size, cfg.hidden, ("vocab", "embed"), stddev=0.02, rngs=rngs)
    self.position = layers.Embed(cfg.max_position, cfg.hidden, (None, "embed"), stddev=0.02, rngs=rngs)
    self.token_type = layers.Embed(cfg.type_vocab_size, cfg.hidden, (None, "embed"), stddev=0.02, rngs=rngs)
    self.norm = layers.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps, rngs=rngs)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)

  def __call__(self, ids_BxL, type_ids_BxL):
    positions_1xL = jnp.arange(ids_BxL.shape[1])[None]
    x_BxLxD = self.word(ids_BxL) + self.position(positions_1xL) + self.token_type(type_ids_BxL)
    return self.dropout(self.norm(x_BxLxD))


class BertLayer(nnx.Module):
  """Post-norm: x = LN(x + attn(x)); x = LN(x + FFN(x)). The shared TransformerBlock is pre-norm."""

  def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
    self.attn = layers.MultiHeadAttention(cfg.hidden, cfg.heads, dropout=cfg.dropout, rngs=rngs)
    self.attn_norm = layers.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps, rngs=rngs)
    self.up = layers.dense(cfg.hidden, cfg.intermediate, ("embed", "mlp"), rngs=rngs)
    self.down = layers.dense(cfg.intermediate, cfg.hidden, ("mlp", "embed"), rngs=rngs)
    self.mlp_norm = layers.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps, rngs=rngs)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
    self.activation = cfg.activation

  def __call__(self, x_BxLxD, *, mask):
    x_BxLxD = self.attn_norm(x_BxLxD + self.attn(x_BxLxD, mask=mask))
    h_BxLxF = ACTIVATIONS[self.activation](self.up(x_BxLxD))
    return self.mlp_norm(x_BxLxD + self.dropout(self.down(h_BxLxF)))


class Bert(nnx.Module):
  def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embeddings = BertEmbeddings(cfg, rngs=rngs)
    self.layers = nnx.List([BertLayer(cfg, rngs=rngs) for _ in range(cfg.layers)])

  def __call__(self, ids_BxL: jax.Array, valid_BxL: jax.Array, type_ids_BxL: jax.Array | None = None):
    """Hidden states [B, L, D]. `valid_BxL` is True at real tokens (the tokenizer's attention mask)."""
    if ids_BxL.shape[1] > self.cfg.max_position:
      raise ValueError(
        f"sequence length {ids_BxL.shape[1]} exceeds max_position={self.cfg.max_position}; "
        "truncate the text (TextEncoder(max_length=...))"
      )
    type_ids_BxL = jnp.zeros_like(ids_BxL) if type_ids_BxL is None else type_ids_BxL
    x_BxLxD = self.embeddings(ids_BxL, type_ids_BxL)
    mask = layers.padding_mask(valid_BxL.astype(bool))
    for layer in self.layers:
      x_BxLxD = layer(x_BxLxD, mask=mask)
    return x_BxLxD

  def encode(self, ids_BxL: jax.Array, valid_BxL: jax.Array, type_ids_BxL: jax.Array | None = None):
    """One vector per text, [B, D] float32: pooled per `cfg.pooling`, L2-normalised if `cfg.normalize`."""
    h_BxLxD = self(ids_BxL, valid_BxL, type_ids_BxL).astype(jnp.float32)
    if self.cfg.pooling == "cls":
      pooled_BxD = h_BxLxD[:, 0]
    else:
      w_BxLx1 = valid_BxL.astype(jnp.float32)[..., None]
      # sentence-transformers clamps the token count at 1e-9 (an all-padding row pools to zeros, not NaN)
      pooled_BxD = (h_BxLxD * w_BxLx1).sum(1) / jnp.maximum(w_BxLx1.sum(1), 1e-9)
    if self.cfg.normalize:
      # torch.nn.functional.normalize: x / max(||x||, 1e-12)
      norm_Bx1 = jnp.linalg.norm(pooled_BxD, axis=-1, keepdims=True)
      pooled_BxD = pooled_BxD / jnp.maximum(norm_Bx1, 1e-12)
    return pooled_BxD
