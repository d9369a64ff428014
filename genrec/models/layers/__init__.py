"""Shared building blocks: written once, reused by every model family."""

from genrec.models.layers.attention import (
  MLP,
  MultiHeadAttention,
  TransformerBlock,
  causal_mask,
  dot_product_attention,
  padding_mask,
  softmax_parts,
)
from genrec.models.layers.core import Embed, LayerNorm, RMSNorm, dense, param, partitioned
from genrec.models.layers.t5 import (
  Attention,
  DecoderBlock,
  EncoderBlock,
  RelativePositionBias,
  init_kv_cache,
  relative_position_bucket,
)
