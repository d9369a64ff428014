"""Hugging Face Llama / Qwen2 checkpoints (config.json + safetensors, one file or sharded) → `DecoderLM`.

Streamed: the module is built abstractly (`nnx.eval_shape`), then each shard is opened with
`safetensors.safe_open` and copied tensor by tensor into the state, each one placed as it is read
(`place(path, array)`, e.g. `jax.device_put` onto that parameter's sharding), so the full model never sits
twice in host memory. Names are checked before any data is read: a missing or unknown tensor, or one whose
shape does not fit the config, is an error that names it. HF `Linear.weight` is [out, in] and becomes the
kernel [in, out]. bfloat16 tensors are read from their raw bytes (older safetensors' NumPy backend cannot).
Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from genrec import extras
from genrec.models.llm.model import DecoderLM, LLMConfig
from genrec.models.text.hf_import import CheckpointError, find_file

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
TOKENIZER = "tokenizer.json"

# NNX module name → HF module name, inside model.layers.{i}.
LAYER_MODULES = {
  ("attn", "q"): "self_attn.q_proj",
  ("attn", "k"): "self_attn.k_proj",
  ("attn", "v"): "self_attn.v_proj",
  ("attn", "o"): "self_attn.o_proj",
  ("mlp", "gate"): "mlp.gate_proj",
  ("mlp", "up"): "mlp.up_proj",
  ("mlp", "down"): "mlp.down_proj",
  ("attn_norm",): "input_layernorm",
  ("mlp_norm",): "post_attention_layernorm",
}
TOP_MODULES = {("tokens",): "model.embed_tokens", ("norm",): "model.norm", ("lm_head",): "lm_head"}
LEAF_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight", "embedding": "weight"}

Place = Callable[[tuple, np.ndarray], jax.Array]


def hf_name(path: tuple) -> str:
  """The HF tensor name of an NNX state path, e.g. ("layers", 3, "attn", "q", "kernel") →
  "model.layers.3.self_attn.q_proj.weight"."""
  *module, leaf = path
  if module[0] == "layers":
    return f"model.layers.{module[1]}.{LAYER_MODULES[tuple(module[2:])]}.{LEAF_NAMES[leaf]}"
  return f"{TOP_MODULES[tuple(module)]}.{LEAF_NAMES[leaf]}"


def hf_shape(path: tuple, shape) -> tuple[int, ...]:
  """The HF layout of a parameter's shape: Linear weights are [out, in]."""
  return tuple(shape[::-1] if path[-1] == "kernel" else shape)


def _ignored(name: str, cfg: LLMConfig) -> bool:
  """Buffers some exports carry (RoPE inv_freq) and a tied model's copy of the embedding as lm_head."""
  return name.endswith(".rotary_emb.inv_freq") or (cfg.tie_embeddings and name == "lm_head.weight")


def load_config(path: str | os.PathLike, **overrides) -> LLMConfig:
  """The LLMConfig from the folder's config.json (model_type llama or qwen2)."""
  file = find_file(path, CONFIG, "the model's shape: hidden_size, num_hidden_layers, …; or pass config=LLMConfig(...)")
  try:
    hf = json.loads(file.read_text())
    return LLMConfig.from_hf_config(hf, **overrides)
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{file} is not valid JSON: {e}") from e
  except ValueError as e:
    raise CheckpointError(f"{file}: {e}") from e


def checkpoint_files(path: str | os.PathLike) -> dict[str, Path]:
  """tensor name → the .safetensors file holding it: from model.safetensors.index.json (sharded) or the
  single model.safetensors."""
  folder = Path(path).expanduser()
  folder = folder if folder.is_dir() else folder.parent
  index = folder / INDEX
  if index.is_file():
    try:
      weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise CheckpointError(f"{index} is not a safetensors index (no weight_map): {e}") from e
    files = {name: folder / shard for name, shard in weight_map.items()}
    absent = sorted({p.name for p in files.values() if not p.is_file()})
    if absent:
      raise CheckpointError(f"{index} lists shard(s) {absent} that are not in {folder}")
    return files
  safe_open = extras.need("safetensors", "LLM weights").safe_open

  single = find_file(folder, WEIGHTS, f"the weights; a sharded checkpoint has {INDEX} instead")
  with safe_open(str(single), framework="numpy") as f:
    return {name: single for name in f.keys()}


def _raw_header(file: Path) -> tuple[dict, int]:
  """The safetensors JSON header and the byte offset where tensor data starts."""
  with file.open("rb") as fh:
    (size,) = struct.unpack("<Q", fh.read(8))
    return json.loads(fh.read(size)), 8 + size


def read_bf16(file: Path, name: str, header: tuple[dict, int] | None = None) -> np.ndarray:
  """A BF16 tensor as an ml_dtypes.bfloat16 array, read from its bytes (little-endian per the format)."""
  entries, data_start = header or _raw_header(file)
  entry = entries[name]
  if entry["dtype"] != "BF16":
    raise CheckpointError(f"{file}: tensor {name} is {entry['dtype']}, not BF16")
  begin, end = entry["data_offsets"]
  raw = np.fromfile(file, dtype="<u2", count=(end - begin) // 2, offset=data_start + begin)
  return raw.view(ml_dtypes.bfloat16).reshape(entry["shape"])


def abstract_lm(cfg: LLMConfig) -> DecoderLM:
  """The model's structure with ShapeDtypeStructs for values: for shardings and restore targets."""
  return nnx.eval_shape(lambda: DecoderLM(cfg, rngs=nnx.Rngs(0)))


def load_llm(
  path: str | os.PathLike, *, dtype=jnp.float32, config: LLMConfig | None = None, place: Place | None = None
) -> DecoderLM:
  """A `DecoderLM` from a HF folder; parameters in `dtype`. `place(path, array)` puts one parameter where it
  belongs (default: `jnp.asarray`); `path` is its NNX state path, e.g. ("layers", 0, "mlp", "up", "kernel")."""
  safe_open = extras.need("safetensors", "LLM weights").safe_open

  folder = Path(path).expanduser()
  cfg = config if config is not None else load_config(folder)
  files = checkpoint_files(folder)
  graphdef, state = nnx.split(abstract_lm(cfg))
  flat = dict(nnx.to_flat_state(state))
  table = {hf_name(p): p for p in flat}
  present = {n for n in files if not _ignored(n, cfg)}
  missing, unexpected = sorted(set(table) - present), sorted(present - set(table))
  if missing or unexpected:
    shapes = ", ".join(f"{n} {hf_shape(table[n], flat[table[n]].shape)}" for n in missing)
    raise CheckpointError(
      f"{folder} does not match {cfg.family} LLMConfig(hidden={cfg.hidden}, layers={cfg.layers}, "
      f"tie_embeddings={cfg.tie_embeddings}, qkv_bias={cfg.qkv_bias}): missing tensors {missing or 'none'}"
      f"{f' (expected {shapes})' if missing else ''}; unexpected tensors {unexpected or 'none'}"
    )
  place = place or (lambda _, array: jnp.asarray(array))
  np_dtype = np.dtype(dtype)
  by_file: dict[Path, list[str]] = {}
  for name in table:
    by_file.setdefault(files[name], []).append(name)
  for file, names in by_file.items():
    header = None
    with safe_open(str(file), framework="numpy") as f:
      keys = set(f.keys())
      for name in names:
        if name not in keys:
          raise CheckpointError(f"{INDEX} puts tensor {name} in {file.name}, which does not hold it")
        p, var = table[name], flat[table[name]]
        is_kernel = p[-1] == "kernel"
        expected = hf_shape(p, var.shape)
        tensor_slice = f.get_slice(name)
        if tuple(tensor_slice.get_shape()) != expected:
          raise CheckpointError(
            f"{file.name}: tensor {name} has shape {tuple(tensor_slice.get_shape())} but the config implies "
            f"{expected} (HF layout); is config.json the one these weights were saved with?"
          )
        if tensor_slice.get_dtype() == "BF16":
          header = header or _raw_header(file)
          value = read_bf16(file, name, header)
        else:
          value = f.get_tensor(name)
        value = np.ascontiguousarray(value.T if is_kernel else value).astype(np_dtype, copy=False)
        flat[p] = var.replace(place(p, value))
        del value
  return nnx.merge(graphdef, nnx.from_flat_state(list(flat.items())))


def check_special_tokens(tokenizer, required: Sequence[str], source: str = "tokenizer") -> dict[str, int]:
  """token → id for each of `required`; a token the vocabulary lacks is an error naming it."""
  missing = [t for t in required if tokenizer.token_to_id(t) is None]
  if missing:
    raise CheckpointError(
      f"{source} lacks the special token(s) {missing}; the model needs them (is this the "
      "tokenizer of the same model family?)"
    )
  return {t: tokenizer.token_to_id(t) for t in required}


def load_tokenizer(path: str | os.PathLike, required: Sequence[str] = ()):
  """A `tokenizers.Tokenizer` from the folder's tokenizer.json, checked to hold every `required` token."""
  Tokenizer = extras.need("tokenizers", "LLM tokenizer").Tokenizer

  file = find_file(path, TOKENIZER, "the tokenizer")
  tok = Tokenizer.from_file(str(file))
  check_special_tokens(tok, required, source=str(file))
  return tok
