"""Hugging Face BERT checkpoints (config.json + model.safetensors + tokenizer.json) → `Bert`, without torch.

Weights are read with `safetensors.numpy` (never pickle) and placed by a name table: HF `Linear.weight` is
[out, in] and is transposed to the NNX kernel [in, out]; everything else is copied as is. The checkpoint must
match the config exactly: a tensor of the wrong shape, a missing tensor or an unknown tensor is an error that
names it. The module is built abstractly (`nnx.eval_shape`), so loading never runs a random initialiser.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models.text.bert import Bert, BertConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
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


class CheckpointError(ValueError):
  """A checkpoint that does not fit its config (names the tensors) or a missing file (names the path)."""


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


def find_file(path: str | os.PathLike, name: str, what: str) -> Path:
  """`path` is a model folder or a file inside it; returns folder/name or raises naming what it is for."""
  path = Path(path).expanduser()
  folder = path if path.is_dir() else path.parent
  if not folder.exists():
    raise CheckpointError(f"model folder {folder} does not exist")
  found = folder / name
  if not found.is_file():
    present = sorted(p.name for p in folder.iterdir())
    raise CheckpointError(f"no {name} in {folder} ({what}); the folder holds {present}")
  return found


def load_config(path: str | os.PathLike, **overrides) -> BertConfig:
  """The BertConfig from the `config.json` next to the weights (HF ships one with every model)."""
  file = find_file(path, CONFIG, "the model's shape: hidden_size, num_hidden_layers, …; "
                   "or pass config=BertConfig(...)")
  try:
    hf = json.loads(file.read_text())
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{file} is not valid JSON: {e}") from e
  return BertConfig.from_hf_config(hf, **overrides)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """All tensors of a .safetensors file as NumPy arrays (no pickle, no torch)."""
  from safetensors import SafetensorError
  from safetensors.numpy import load_file

  path = Path(path)
  if path.is_dir():
    path = find_file(path, WEIGHTS, "the weights")
  try:
    return load_file(str(path))
  except (SafetensorError, OSError, TypeError) as e:
    raise CheckpointError(f"cannot read {path} as safetensors (bfloat16 tensors need a float32 export): {e}") from e


def bert_from_tensors(tensors: dict[str, np.ndarray], cfg: BertConfig, *, source: str = "checkpoint",
                      dtype=jnp.float32) -> Bert:
  """Builds a `Bert` for `cfg` holding exactly `tensors` (HF names and layout)."""
  tensors = {_canonical(k): v for k, v in tensors.items()}
  table = name_table(cfg)
  missing = sorted(set(table) - set(tensors))
  unexpected = sorted(set(tensors) - set(table) - set(IGNORED))
  if missing or unexpected:
    raise CheckpointError(
        f"{source} does not match BertConfig(hidden={cfg.hidden}, layers={cfg.layers}, heads={cfg.heads}): "
        f"missing tensors {missing or 'none'}; unexpected tensors {unexpected or 'none'}")

  abstract = nnx.eval_shape(lambda: Bert(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  by_path = {path: name for name, path in table.items()}
  leaves = []
  for path, var in nnx.to_flat_state(state):
    if isinstance(var, nnx.Param):
      name = by_path[path]
      value = tensors[name]
      if path[-1] == "kernel":
        value = value.T
      if value.shape != var.shape:
        raise CheckpointError(
            f"{source}: tensor {name} has shape {tensors[name].shape} but the config implies "
            f"{var.shape[::-1] if path[-1] == 'kernel' else var.shape} (HF layout); is config.json the "
            "one these weights were saved with?")
      var = var.replace(jnp.asarray(value, dtype))
    else:   # dropout's RNG state: a fresh key and counter (dropout is off for an imported encoder)
      is_key = jax.dtypes.issubdtype(var.get_value().dtype, jax.dtypes.prng_key)
      var = var.replace(jax.random.key(0) if is_key else jnp.zeros(var.shape, var.get_value().dtype))
    leaves.append((path, var))
  return nnx.merge(graphdef, nnx.from_flat_state(leaves))


def load_bert(path: str | os.PathLike, *, config: BertConfig | None = None, dtype=jnp.float32) -> Bert:
  """A `Bert` from a HF folder (or its .safetensors file); the config from config.json unless given."""
  path = Path(path).expanduser()
  weights = path if path.is_file() else find_file(path, WEIGHTS, "the weights")
  cfg = config if config is not None else load_config(path)
  return bert_from_tensors(read_safetensors(weights), cfg, source=str(weights), dtype=dtype)


def load_tokenizer(path: str | os.PathLike, max_length: int):
  """A `tokenizers.Tokenizer` from tokenizer.json that truncates to `max_length` and does not pad
  (the encoder pads to its own length buckets)."""
  from tokenizers import Tokenizer

  tok = Tokenizer.from_file(str(find_file(path, TOKENIZER, "the tokenizer")))
  tok.no_padding()
  tok.enable_truncation(max_length)
  return tok


def default_max_length(path: str | os.PathLike, cfg: BertConfig) -> int:
  """sentence-transformers' `max_seq_length` if the folder has one (256 for all-MiniLM-L6-v2), else the
  tokenizer's truncation length, else the model's `max_position`."""
  folder = Path(path) if Path(path).is_dir() else Path(path).parent
  for file, read in (("sentence_bert_config.json", lambda d: d.get("max_seq_length")),
                     (TOKENIZER, lambda d: (d.get("truncation") or {}).get("max_length"))):
    if (folder / file).is_file():
      value = read(json.loads((folder / file).read_text()))
      if value:
        return min(int(value), cfg.max_position)
  return cfg.max_position


def file_fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
  """sha256 of a file's size, first and last MiB: cheap, and changes when the weights change."""
  path = Path(path)
  size = path.stat().st_size
  h = hashlib.sha256(str(size).encode())
  with path.open("rb") as f:
    h.update(f.read(chunk))
    if size > chunk:
      f.seek(max(chunk, size - chunk))
      h.update(f.read(chunk))
  return h.hexdigest()
