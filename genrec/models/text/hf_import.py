"""Hugging Face BERT checkpoints (config.json + model.safetensors + tokenizer.json) → `Bert`, without torch.

Weights are read with `safetensors.numpy` (never pickle) and placed by a name table: HF `Linear.weight` is
[out, in] and is transposed to the NNX kernel [in, out]; everything else is copied as is. The checkpoint must
match the config exactly: a tensor of the wrong shape, a missing tensor or an unknown tensor is an error that
names it. The module is built abstractly (`nnx.eval_shape`), so loading never runs a random initialiser.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec import extras
from genrec.models.hf import (  # noqa: F401
  CONFIG,
  WEIGHTS,
  CheckpointError,
  file_fingerprint,
  find_file,
  module_from_tensors,
  read_json,
  read_safetensors,
)
from genrec.models.text.bert import Bert, BertConfig

TOKENIZER = "tokenizer.json"

# HF name → NNX path. Per layer: `encoder.layer.{i}.` + key ↦ ("layers", i) + path.
EMBEDDING_NAMES = {
  "embeddings.word_embeddings.weight": ("embeddings", "word", "embedding"),
  "embeddings.position_embeddings.weight": ("embeddings", "position", "embedding"),
  "embeddings.token_type_embeddings.weight": ("embeddings", "token_type", "embedding"),
  "embeddings.LayerNorm.weight": ("embeddings", "norm", "scale"),
  "embeddings.LayerNorm.bias": ("embeddings", "norm", "bias"),
}
LAYER_NAMES = {
  "attention.self.query.weight": ("attn", "q", "kernel"),
  "attention.self.query.bias": ("attn", "q", "bias"),
  "attention.self.key.weight": ("attn", "k", "kernel"),
  "attention.self.key.bias": ("attn", "k", "bias"),
  "attention.self.value.weight": ("attn", "v", "kernel"),
  "attention.self.value.bias": ("attn", "v", "bias"),
  "attention.output.dense.weight": ("attn", "o", "kernel"),
  "attention.output.dense.bias": ("attn", "o", "bias"),
  "attention.output.LayerNorm.weight": ("attn_norm", "scale"),
  "attention.output.LayerNorm.bias": ("attn_norm", "bias"),
  "intermediate.dense.weight": ("up", "kernel"),
  "intermediate.dense.bias": ("up", "bias"),
  "output.dense.weight": ("down", "kernel"),
  "output.dense.bias": ("down", "bias"),
  "output.LayerNorm.weight": ("mlp_norm", "scale"),
  "output.LayerNorm.bias": ("mlp_norm", "bias"),
}
# A registered buffer and the [CLS] pooler head: present in BertModel checkpoints, unused by mean pooling.
IGNORED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def name_table(cfg: BertConfig) -> dict[str, tuple]:
  """Every tensor a checkpoint of `cfg` must hold: HF name → NNX state path."""
  table = dict(EMBEDDING_NAMES)
  for i in range(cfg.layers):
    table.update({f"encoder.layer.{i}.{k}": ("layers", i) + v for k, v in LAYER_NAMES.items()})
  return table


def _canonical(name: str) -> str:
  """Older checkpoints prefix `bert.` (BertFor* heads) and call LayerNorm parameters gamma/beta."""
  name = name.removeprefix("bert.")
  if ".LayerNorm." in name:
    name = name.replace(".gamma", ".weight").replace(".beta", ".bias")
  return name


def load_config(path: str | os.PathLike, **overrides) -> BertConfig:
  """The BertConfig from the `config.json` next to the weights (HF ships one with every model)."""
  file = find_file(path, CONFIG, "the model's shape: hidden_size, num_hidden_layers, …; or pass config=BertConfig(...)")
  return BertConfig.from_hf_config(read_json(file), **overrides)


def bert_from_tensors(
  tensors: dict[str, np.ndarray], cfg: BertConfig, *, source: str = "checkpoint", dtype=jnp.float32
) -> Bert:
  """Builds a `Bert` for `cfg` holding exactly `tensors` (HF names and layout)."""
  tensors = {_canonical(k): v for k, v in tensors.items()}
  return module_from_tensors(
    lambda: Bert(cfg, rngs=nnx.Rngs(0)),
    tensors,
    name_table(cfg),
    source=source,
    ignored=IGNORED,
    dtype=dtype,
    what=f"BertConfig(hidden={cfg.hidden}, layers={cfg.layers}, heads={cfg.heads})",
  )


def load_bert(path: str | os.PathLike, *, config: BertConfig | None = None, dtype=jnp.float32) -> Bert:
  """A `Bert` from a HF folder (or its .safetensors file); the config from config.json unless given."""
  path = Path(path).expanduser()
  weights = path if path.is_file() else find_file(path, WEIGHTS, "the weights")
  cfg = config if config is not None else load_config(path)
  return bert_from_tensors(read_safetensors(weights), cfg, source=str(weights), dtype=dtype)


def load_tokenizer(path: str | os.PathLike, max_length: int):
  """A `tokenizers.Tokenizer` from tokenizer.json that truncates to `max_length` and does not pad
  (the encoder pads to its own length buckets)."""
  Tokenizer = extras.need("tokenizers", "text tokenizer").Tokenizer

  tok = Tokenizer.from_file(str(find_file(path, TOKENIZER, "the tokenizer")))
  tok.no_padding()
  tok.enable_truncation(max_length)
  return tok


def default_max_length(path: str | os.PathLike, cfg: BertConfig) -> int:
  """sentence-transformers' `max_seq_length` if the folder has one (256 for all-MiniLM-L6-v2), else the
  tokenizer's truncation length, else the model's `max_position`."""
  folder = Path(path) if Path(path).is_dir() else Path(path).parent
  for file, read in (
    ("sentence_bert_config.json", lambda d: d.get("max_seq_length")),
    (TOKENIZER, lambda d: (d.get("truncation") or {}).get("max_length")),
  ):
    if (folder / file).is_file():
      value = read(json.loads((folder / file).read_text()))
      if value:
        return min(int(value), cfg.max_position)
  return cfg.max_position
