"""RQ-VAE semantic-ID tokenizer (TIGER, Rajput et al. 2023): MLP encoder → L-level residual quantizer → MLP decoder.

Batches (task "item_embeddings"): {"embedding": float [B, D], "item": int [B]}; `item` only tells the batch
collision metric which rows are the same item.

    loss = recon + Σ_l ‖sg(r_l) − q_l‖² + β Σ_l ‖r_l − sg(q_l)‖²      (squared norms summed over features,
                                                                     averaged over the batch)

r_0 = z = encoder(x), q_l = the code of level l nearest to r_l, r_{l+1} = r_l − sg(q_l). The decoder sees
z_q = Σ_l q_l through the straight-through estimator or the rotation trick (Fifty et al., 2024), applied to the
whole quantizer map z ↦ z_q so both options pass the same gradient scale to the encoder.

State beyond parameters (non-Param variables, threaded through the train step and checkpointed):
  codebook_shift [L, K, latent]  added to the codebook parameters; dead-code restart writes here, because a
                                 train step keeps only the non-Param state a loss call changes.
  unused_steps   [L, K] int32    train steps since each code was last chosen in a batch.
A code unused for `dead_code_steps` train steps is moved onto a current-batch residual of its level (the worst
fitted ones first) and its counter reset. `init_codebooks` (once, before training) sets the codebooks by
residual k-means on the encoder's latents of the whole catalogue.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.models import layers
from genrec.models.semantic_ids.kmeans import DEFAULT_CHUNK
from genrec.models.semantic_ids.rqkmeans import fit_rqkmeans, resolve_tokenizer
from genrec.registry import register

QUANTIZERS = ("ste", "rotation")
sg = jax.lax.stop_gradient
_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class RQVAEConfig:
  input_dim: int = 0  # 0: the width of the item embeddings, when training starts
  hidden_dims: tuple[int, ...] = (512, 256, 128)
  latent_dim: int = 32
  levels: int = 3
  codebook_size: int = 256
  beta: float = 0.25  # commitment weight
  quantizer: str = "ste"  # "ste" | "rotation"
  kmeans_init: bool = True  # the trainer calls init_codebooks(all embeddings) before step 1
  kmeans_iters: int = 20
  dead_code_steps: int = 100  # restart a code unused this many train steps; 0: never
  dropout: float = 0.0

  task: str = "item_embeddings"

  def resolve(self, data, data_cfg) -> RQVAEConfig:
    """Takes input_dim from `data.item_embeddings` [*, D] when unset; checks the codebook fits the catalogue."""
    del data_cfg
    return resolve_tokenizer(self, data, "RQ-VAE", check_codebook=self.kmeans_init)

  def validate(self) -> None:
    if self.input_dim <= 0:
      raise ValueError("RQVAEConfig.input_dim is 0: call cfg.resolve(data, data_cfg) or set it to the embedding width")
    if self.quantizer not in QUANTIZERS:
      raise ValueError(f"RQVAEConfig.quantizer={self.quantizer!r} is not one of {QUANTIZERS}")
    if self.levels < 1 or self.codebook_size < 2 or self.latent_dim < 1:
      raise ValueError(
        f"RQVAEConfig needs levels >= 1, codebook_size >= 2, latent_dim >= 1 (got {self.levels}, "
        f"{self.codebook_size}, {self.latent_dim})"
      )
    if self.dead_code_steps < 0 or not 0.0 <= self.dropout < 1.0:
      raise ValueError(
        f"RQVAEConfig: dead_code_steps must be >= 0 and dropout in [0, 1) (got {self.dead_code_steps}, {self.dropout})"
      )


class CodebookShift(nnx.Variable):
  pass


class CodeUsage(nnx.Variable):
  pass


def rotate_to(e_BxD: jax.Array, q_BxD: jax.Array, eps: float = 1e-6) -> jax.Array:
  """The rotation trick: returns q in value; the gradient w.r.t. e is that of (‖q‖/‖e‖)·R·e with R the rotation
  taking e's direction to q's, both treated as constants — so the gradient reaching e is rotated (and rescaled)
  the way e was, instead of copied unchanged as the straight-through estimator does."""
  e_norm = sg(jnp.maximum(jnp.linalg.norm(e_BxD, axis=-1, keepdims=True), eps))
  q_norm = sg(jnp.maximum(jnp.linalg.norm(q_BxD, axis=-1, keepdims=True), eps))
  u = sg(e_BxD) / e_norm
  q_hat = sg(q_BxD) / q_norm
  w = u + q_hat
  w = w / jnp.maximum(jnp.linalg.norm(w, axis=-1, keepdims=True), eps)
  # R e = e − 2 w (wᵀe) + 2 q̂ (uᵀe): Householder reflection through w, then the reflection taking u to q̂.
  rotated = (
    e_BxD
    - 2.0 * w * jnp.sum(w * e_BxD, axis=-1, keepdims=True)
    + 2.0 * q_hat * jnp.sum(u * e_BxD, axis=-1, keepdims=True)
  )
  return rotated * (q_norm / e_norm)


def straight_through(e_BxD: jax.Array, q_BxD: jax.Array) -> jax.Array:
  return e_BxD + sg(q_BxD - e_BxD)


def _mlp_axes(dims: tuple[int, ...], outer: str) -> list[tuple[str | None, str | None]]:
  """Kernel axes along an MLP: the embedding end is `outer`, hidden widths `mlp`, the latent end replicated."""
  names = [outer] + ["mlp"] * (len(dims) - 2) + [None]
  return list(zip(names[:-1], names[1:]))


def _perplexity(counts_LxK: jax.Array) -> jax.Array:
  p = counts_LxK / jnp.maximum(counts_LxK.sum(-1, keepdims=True), 1.0)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1))


@register("rqvae", RQVAEConfig)
class RQVAE(nnx.Module):
  def __init__(self, cfg: RQVAEConfig, *, rngs: nnx.Rngs):
    cfg.validate()
    self.cfg = cfg
    enc_dims = (cfg.input_dim, *cfg.hidden_dims, cfg.latent_dim)
    self.encoder = nnx.List(
      [
        layers.dense(a, b, axes, rngs=rngs)
        for a, b, axes in zip(enc_dims[:-1], enc_dims[1:], _mlp_axes(enc_dims, "embed"))
      ]
    )
    dec_dims = enc_dims[::-1]
    self.decoder = nnx.List(
      [
        layers.dense(a, b, axes[::-1], rngs=rngs)
        for a, b, axes in zip(dec_dims[:-1], dec_dims[1:], _mlp_axes(enc_dims, "embed")[::-1])
      ]
    )
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
    shape = (cfg.levels, cfg.codebook_size, cfg.latent_dim)
    axes = (None, "codebook", None)  # the latent is narrow: splitting it over fsdp only adds gathers
    self.codebooks = layers.param(nnx.initializers.normal(cfg.latent_dim**-0.5)(rngs.params(), shape), axes)
    self.codebook_shift = CodebookShift(jnp.zeros(shape), out_sharding=axes, eager_sharding=False)
    self.unused_steps = CodeUsage(jnp.zeros(shape[:2], jnp.int32), out_sharding=axes[:2], eager_sharding=False)
    self.deterministic = False  # flipped by .eval() / .train(): restarts happen in training only

  # -- pieces -----------------------------------------------------------------------------------------------
  def _mlp(self, blocks, h, deterministic):
    for i, block in enumerate(blocks):
      h = block(h)
      if i < len(blocks) - 1:
        h = self.dropout(jax.nn.relu(h), deterministic=deterministic)
    return h

  def latent(self, x_BxD: jax.Array, *, deterministic: bool | None = None) -> jax.Array:
    return self._mlp(self.encoder, x_BxD, deterministic)

  def reconstruct_from(self, z_BxH: jax.Array, *, deterministic: bool | None = None) -> jax.Array:
    return self._mlp(self.decoder, z_BxH, deterministic)

  def codebook(self) -> jax.Array:
    """The effective codebooks, float32 [L, K, latent]: parameters + restart shift."""
    return self.codebooks[...].astype(jnp.float32) + self.codebook_shift[...].astype(jnp.float32)

  def quantize(self, z_BxH: jax.Array) -> dict[str, jax.Array]:
    """Greedy residual quantisation of the latents (float32). Returns codes int32 [B, L], z_q [B, H] (gradient to
    the codebooks only), residuals [L, B, H] (what each level saw) and the per-level squared errors [L, B]."""
    books = self.codebook()
    residual = z_BxH.astype(jnp.float32)
    codes, quantized, residuals, errors = [], [], [], []
    for level in range(self.cfg.levels):
      c_KxH = books[level]
      d2_BxK = (
        jnp.sum(jnp.square(residual), -1, keepdims=True)
        - 2.0 * jnp.einsum("bh,kh->bk", sg(residual), sg(c_KxH), precision=_HI)
        + jnp.sum(jnp.square(sg(c_KxH)), -1)[None, :]
      )
      idx_B = jnp.argmin(d2_BxK, axis=-1).astype(jnp.int32)
      q_BxH = jnp.take(c_KxH, idx_B, axis=0)
      codes.append(idx_B)
      quantized.append(q_BxH)
      residuals.append(residual)
      errors.append(jnp.sum(jnp.square(sg(residual) - sg(q_BxH)), -1))
      residual = residual - sg(q_BxH)
    return {
      "codes": jnp.stack(codes, axis=1),
      "z_q": sum(quantized[1:], quantized[0]),
      "quantized": jnp.stack(quantized),
      "residuals": jnp.stack(residuals),
      "errors": jnp.stack(errors),
    }

  # -- the protocol -----------------------------------------------------------------------------------------
  def loss(self, batch):
    cfg = self.cfg
    x_BxD = batch["embedding"].astype(jnp.float32)
    z_BxH = self.latent(x_BxD)
    quant = self.quantize(z_BxH)
    estimator = rotate_to if cfg.quantizer == "rotation" else straight_through
    x_hat_BxD = self.reconstruct_from(estimator(z_BxH.astype(jnp.float32), quant["z_q"]))
    recon = jnp.mean(jnp.sum(jnp.square(x_hat_BxD.astype(jnp.float32) - x_BxD), -1))
    q_LxBxH, r_LxBxH = quant["quantized"], quant["residuals"]
    codebook_loss = jnp.sum(jnp.mean(jnp.sum(jnp.square(sg(r_LxBxH) - q_LxBxH), -1), -1))
    commitment = jnp.sum(jnp.mean(jnp.sum(jnp.square(r_LxBxH - sg(q_LxBxH)), -1), -1))
    loss = recon + codebook_loss + cfg.beta * commitment

    codes_BxL = quant["codes"]
    counts_LxK = jnp.sum(jax.nn.one_hot(codes_BxL.T, cfg.codebook_size, dtype=jnp.float32), axis=1)
    metrics = {
      "recon": recon,
      "recon_rel": recon / jnp.maximum(jnp.mean(jnp.sum(jnp.square(x_BxD), -1)), 1e-12),
      "codebook_loss": codebook_loss,
      "commitment": commitment,
      "collision_rate": batch_collision_rate(codes_BxL, batch.get("item")),
    }
    usage_L = jnp.mean(counts_LxK > 0, axis=-1)
    perplexity_L = _perplexity(counts_LxK)
    for level in range(cfg.levels):
      metrics[f"usage/l{level}"] = usage_L[level]
      metrics[f"perplexity/l{level}"] = perplexity_L[level]
    if cfg.dead_code_steps and not self.deterministic:
      dead_LxK = self._restart_dead_codes(counts_LxK > 0, quant)
      for level in range(cfg.levels):
        metrics[f"restarted/l{level}"] = jnp.mean(dead_LxK[level])
    return loss, metrics

  def _restart_dead_codes(self, used_LxK, quant) -> jax.Array:
    """Counts unused steps; moves codes unused for dead_code_steps onto this batch's worst-fitted residuals."""
    unused_LxK = jnp.where(used_LxK, 0, self.unused_steps[...] + 1)
    dead_LxK = unused_LxK >= self.cfg.dead_code_steps
    residuals_LxBxH, errors_LxB = sg(quant["residuals"]), sg(quant["errors"])
    m = min(errors_LxB.shape[1], self.cfg.codebook_size)
    worst_LxM = jax.lax.top_k(errors_LxB, m)[1]
    rank_LxK = jnp.maximum(jnp.cumsum(dead_LxK, axis=1) - 1, 0) % m  # the r-th dead code takes the r-th worst row
    rows_LxK = jnp.take_along_axis(worst_LxM, rank_LxK, axis=1)
    target_LxKxH = jnp.take_along_axis(residuals_LxBxH, rows_LxK[..., None], axis=1)
    shift = self.codebook_shift[...]
    new_shift = target_LxKxH - sg(self.codebooks[...]).astype(jnp.float32)
    self.codebook_shift[...] = jnp.where(dead_LxK[..., None], new_shift.astype(shift.dtype), shift)
    self.unused_steps[...] = jnp.where(dead_LxK, 0, unused_LxK).astype(jnp.int32)
    return dead_LxK

  def encode(self, batch) -> jax.Array:
    """Codes int32 [B, L] of batch["embedding"] (dropout off; no state changes)."""
    return self.quantize(self.latent(batch["embedding"].astype(jnp.float32), deterministic=True))["codes"]

  def decode_codes(self, codes_BxL: jax.Array) -> jax.Array:
    """The decoder's reconstruction [B, D] of code tuples."""
    books = self.codebook()
    z_q = jnp.sum(books[jnp.arange(self.cfg.levels)[None, :], codes_BxL], axis=1)
    return self.reconstruct_from(z_q, deterministic=True)

  def init_codebooks(
    self, x_NxD, key: jax.Array, *, iters: int | None = None, chunk_size: int = DEFAULT_CHUNK
  ) -> jax.Array:
    """Sets the codebooks by residual k-means on the latents of x (the whole catalogue's embeddings), clears the
    restart shift and counters; returns the codebooks. Eager (call once, outside jit, before training); new
    values keep the shardings of the old ones."""
    n = np.shape(x_NxD)[0]
    if n < self.cfg.codebook_size:
      raise ValueError(
        f"k-means initialisation of {self.cfg.codebook_size} codes needs at least that many items; "
        f"got {n} (use a smaller codebook_size)"
      )
    graphdef, state = nnx.split(self)
    latents = _latents(graphdef, state, jnp.asarray(x_NxD, jnp.float32), min(chunk_size, n))
    books = fit_rqkmeans(
      key,
      latents,
      self.cfg.levels,
      self.cfg.codebook_size,
      self.cfg.kmeans_iters if iters is None else iters,
      chunk_size=chunk_size,
    )
    _assign(self.codebooks, books)
    _assign(self.codebook_shift, jnp.zeros_like(books))
    _assign(self.unused_steps, jnp.zeros(books.shape[:2], jnp.int32))
    return books


def batch_collision_rate(codes_BxL: jax.Array, item_B: jax.Array | None = None) -> jax.Array:
  """Fraction of rows whose code tuple another row of a different item shares."""
  b = codes_BxL.shape[0]
  same_BxB = jnp.ones((b, b), bool)
  for level in range(codes_BxL.shape[1]):
    c = codes_BxL[:, level]
    same_BxB &= c[:, None] == c[None, :]
  other_BxB = ~jnp.eye(b, dtype=bool) if item_B is None else item_B[:, None] != item_B[None, :]
  return jnp.mean(jnp.any(same_BxB & other_BxB, axis=1))


@functools.partial(jax.jit, static_argnums=(0, 3))
def _latents(graphdef, state, x_NxD, chunk):
  model = nnx.merge(graphdef, state)
  n = x_NxD.shape[0]
  chunks = -(-n // chunk)
  x_pad = jnp.pad(x_NxD, ((0, chunks * chunk - n), (0, 0))).reshape(chunks, chunk, -1)
  z = jax.lax.map(lambda x: model.latent(x, deterministic=True).astype(jnp.float32), x_pad)
  return z.reshape(chunks * chunk, -1)[:n]


def _assign(var: nnx.Variable, value: jax.Array) -> None:
  old = var[...]
  value = value.astype(old.dtype)
  if isinstance(old, jax.Array) and not isinstance(old, jax.core.Tracer):
    value = jax.device_put(value, old.sharding)
  var[...] = value
