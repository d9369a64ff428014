"""Residual k-means (RQ-KMeans): L codebooks fitted level by level on what the previous levels left over. No
gradients, no encoder: the codes live in the space of the input embeddings.

    codebooks_LxKxD = fit_rqkmeans(key, x_NxD, levels=3, codebook_size=256, iters=20)
    codes_NxL = rq_encode(codebooks_LxKxD, x_NxD)        # greedy: nearest code of each level to the residual
    x_hat_NxD = rq_decode(codebooks_LxKxD, codes_NxL)    # the sum of the chosen codes
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models import layers
from genrec.models.semantic_ids.kmeans import DEFAULT_CHUNK, _kmeans, check_kmeans_args, nearest
from genrec.registry import register


@jax.jit
def _subtract_assigned(residual_NxD, c_KxD, assign_N):
  return residual_NxD - c_KxD[assign_N]


def fit_rqkmeans(
  key: jax.Array,
  x_NxD: jax.Array,
  levels: int,
  codebook_size: int,
  iters: int = 20,
  *,
  init: str = "kmeans++",
  chunk_size: int = DEFAULT_CHUNK,
) -> jax.Array:
  """Codebooks float32 [levels, codebook_size, D]; level l is k-means on the residual after levels < l.

  Each level's residual is taken against the k-means assignment of that level (what `rq_encode` reproduces,
  since the final assignment is nearest-centroid)."""
  if levels < 1:
    raise ValueError(f"RQ-KMeans needs levels >= 1; got {levels}")
  check_kmeans_args(np.shape(x_NxD), codebook_size, iters, init)
  residual = jnp.asarray(x_NxD, jnp.float32)
  codebooks = []
  for level in range(levels):  # not one jit: every level reuses the same compiled k-means
    c_KxD, assign_N = _kmeans(
      jax.random.fold_in(key, level),
      residual,
      k=int(codebook_size),
      iters=int(iters),
      init=init,
      chunk_size=int(chunk_size),
    )
    residual = _subtract_assigned(residual, c_KxD, assign_N)
    codebooks.append(c_KxD)
  return jnp.stack(codebooks)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def rq_encode(codebooks_LxKxD: jax.Array, x_NxD: jax.Array, *, chunk_size: int = DEFAULT_CHUNK) -> jax.Array:
  """Codes int32 [N, L]: at each level the nearest code to the residual left by the levels before."""

  def level(residual_NxD, c_KxD):
    idx_N = nearest(residual_NxD, c_KxD, chunk_size=chunk_size)[0]
    return residual_NxD - c_KxD[idx_N], idx_N

  _, codes_LxN = jax.lax.scan(level, x_NxD.astype(jnp.float32), codebooks_LxKxD.astype(jnp.float32))
  return codes_LxN.T


@jax.jit
def rq_decode(codebooks_LxKxD: jax.Array, codes_NxL: jax.Array) -> jax.Array:
  """The reconstruction [N, D]: the sum over levels of each level's chosen code."""
  levels = codebooks_LxKxD.shape[0]
  if codes_NxL.ndim != 2 or codes_NxL.shape[1] != levels:
    raise ValueError(f"codes of shape {codes_NxL.shape} do not match {levels} codebook levels")
  chosen_NxLxD = codebooks_LxKxD[jnp.arange(levels)[None, :], codes_NxL]
  return chosen_NxLxD.sum(axis=1)


@dataclasses.dataclass(frozen=True)
class RQKMeansConfig:
  """Residual k-means as a registered tokenizer: fitted once (trainer.steps=0), no gradients."""

  input_dim: int = 0  # 0: the width of the item embeddings
  levels: int = 3
  codebook_size: int = 256
  kmeans_iters: int = 20

  task: str = "item_embeddings"

  def resolve(self, data, data_cfg) -> RQKMeansConfig:
    del data_cfg
    return resolve_tokenizer(self, data, "RQ-KMeans")


def resolve_tokenizer(cfg, data, name: str, *, check_codebook: bool = True):
  """A tokenizer config's input_dim from `data.item_embeddings` [*, D] when unset; a codebook larger than the
  catalogue is refused (k-means cannot place more codes than there are items)."""
  table = getattr(data, "item_embeddings", None)
  if not cfg.input_dim and table is not None:
    cfg = dataclasses.replace(cfg, input_dim=int(np.shape(table)[-1]))
  num_items = getattr(data, "num_items", None)
  if check_codebook and num_items is not None and cfg.codebook_size > num_items:
    raise ValueError(
      f"{name} codebook_size={cfg.codebook_size} is larger than the catalogue of {num_items} "
      "items; k-means cannot place that many codes (use a smaller model.codebook_size)"
    )
  return cfg


@register("rqkmeans", RQKMeansConfig)
class RQKMeans(nnx.Module):
  def __init__(self, cfg: RQKMeansConfig, *, rngs: nnx.Rngs):
    if cfg.input_dim <= 0:
      raise ValueError("RQKMeansConfig.input_dim is 0: call cfg.resolve(data, data_cfg) or set it")
    self.cfg = cfg
    init = nnx.initializers.normal(1.0)(rngs.params(), (cfg.levels, cfg.codebook_size, cfg.input_dim))
    self.codebooks = layers.param(init, (None, "codebook", None))

  def encode(self, batch) -> jax.Array:
    return rq_encode(self.codebooks[...], batch["embedding"].astype(jnp.float32))

  def loss(self, batch):
    x = batch["embedding"].astype(jnp.float32)
    books = jax.lax.stop_gradient(self.codebooks[...])
    recon = jnp.mean(jnp.sum(jnp.square(rq_decode(books, rq_encode(books, x)) - x), axis=-1))
    return recon, {"loss": recon, "recon": recon}

  def init_codebooks(self, x_NxD, key: jax.Array, **_) -> jax.Array:
    books = fit_rqkmeans(
      key, jnp.asarray(x_NxD, jnp.float32), self.cfg.levels, self.cfg.codebook_size, self.cfg.kmeans_iters
    )
    old = self.codebooks[...]
    self.codebooks[...] = jax.device_put(books, old.sharding) if isinstance(old, jax.Array) else books
    return books
