"""LoRA (Hu et al., 2021) for linear layers: y = x W + b + (alpha / rank) · dropout(x) A B.

Protocol: build (or import) a model, then `apply_lora(model, LoRAConfig(...), rngs=...)` swaps every
`nnx.Linear` whose attribute name is a target for a `LoRALinear` that shares the base kernel and bias (their
state paths do not change, so base weights load the same with or without adapters). Adapters are `LoRAParam`,
a subclass of `nnx.Param`: `trainable_filter(cfg)` selects only them for the optimizer
(`nnx.Optimizer(model, tx, wrt=trainable_filter(cfg))`, `nnx.DiffState(0, trainable_filter(cfg))` for grads),
while the trainer's `nnx.Param` split still checkpoints everything. B starts at zero, so a fresh adapter
leaves the model's outputs unchanged. `merge_lora` folds A B into W for inference; `unmerge_lora` takes it out.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.models.layers.core import on_rows


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
  """targets: attribute names of the linear layers to adapt (DecoderLM: q, k, v, o, gate, up, down)."""

  rank: int = 8
  alpha: float = 16.0
  targets: tuple[str, ...] = ("q", "k", "v", "o")
  dropout: float = 0.0

  def __post_init__(self):
    if self.rank < 1:
      raise ValueError(f"LoRAConfig: rank must be >= 1, got {self.rank}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"LoRAConfig: dropout must be in [0, 1), got {self.dropout}")
    if not self.targets:
      raise ValueError("LoRAConfig: targets is empty; name the linear layers to adapt, e.g. ('q', 'v')")

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


class LoRAParam(nnx.Param):
  """A LoRA adapter matrix: the only parameters a LoRA fine-tune updates."""


def trainable_filter(cfg: LoRAConfig | None):
  """The nnx filter of what an optimizer should update: the adapters, or every parameter without LoRA."""
  return nnx.Param if cfg is None else LoRAParam


class LoRALinear(nnx.Module):
  """A linear layer with a low-rank adapter; `kernel`/`bias` are the wrapped layer's own Variables."""

  def __init__(self, base: nnx.Linear, cfg: LoRAConfig, *, rngs: nnx.Rngs):
    self.kernel = base.kernel
    self.bias = base.bias
    d_in, d_out = base.kernel.shape
    in_axis, out_axis = base.kernel.get_metadata().get("out_sharding") or (None, None)
    # PEFT's kaiming_uniform(a=sqrt(5)) on A: U(-1/sqrt(d_in), 1/sqrt(d_in))
    a_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    self.lora_a = LoRAParam(
      a_init(rngs.params(), (d_in, cfg.rank), jnp.float32), out_sharding=(in_axis, None), eager_sharding=False
    )
    self.lora_b = LoRAParam(
      jnp.zeros((cfg.rank, d_out), jnp.float32), out_sharding=(None, out_axis), eager_sharding=False
    )
    self.scale = cfg.scale
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs) if cfg.dropout else None
    self.merged = False

  def delta(self) -> jax.Array:
    """(alpha / rank) A B in float32: what merge() adds to the kernel."""
    return self.scale * (self.lora_a[...].astype(jnp.float32) @ self.lora_b[...].astype(jnp.float32))

  def __call__(self, x):
    return on_rows(self._call_2d, x)  # a 2-D product, as layers.core.Linear

  def _call_2d(self, x):
    kernel = self.kernel[...]
    dtype = jnp.result_type(x, kernel)
    y = jnp.dot(x.astype(dtype), kernel.astype(dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype).reshape((1,) * (y.ndim - 1) + (-1,))
    if not self.merged:
      h = x if self.dropout is None else self.dropout(x)
      low = jnp.dot(h.astype(dtype), self.lora_a[...].astype(dtype))
      y = y + jnp.dot(low, self.lora_b[...].astype(dtype)) * self.scale
    return y

  def merge(self):
    """Folds the adapter into the kernel (W += s A B); the forward then skips the adapter path. Exact up to
    rounding in the kernel's dtype (lossy for a bfloat16 kernel)."""
    if not self.merged:
      kernel = self.kernel[...]
      self.kernel[...] = (kernel.astype(jnp.float32) + self.delta()).astype(kernel.dtype)
      self.merged = True

  def unmerge(self):
    """Undoes merge(): W -= s A B, so the adapter can train again."""
    if self.merged:
      kernel = self.kernel[...]
      self.kernel[...] = (kernel.astype(jnp.float32) - self.delta()).astype(kernel.dtype)
      self.merged = False


def _child(node, part):
  return node[part] if isinstance(part, int) else getattr(node, part)


def apply_lora(module: nnx.Module, cfg: LoRAConfig, *, rngs: nnx.Rngs) -> list[str]:
  """Wraps, in place, every `nnx.Linear` in `module` whose attribute name is in `cfg.targets`; returns the
  dotted paths wrapped. A target that names no linear layer is an error (a typo would otherwise train
  nothing)."""
  linears = [(path, node) for path, node in nnx.iter_graph(module) if isinstance(node, nnx.Linear) and path]
  names = sorted({str(path[-1]) for path, _ in linears})
  unknown = [t for t in cfg.targets if t not in names]
  if unknown:
    raise ValueError(
      f"LoRA targets {unknown} name no linear layer of {type(module).__name__}; its linear layers are named {names}"
    )
  wrapped = []
  for path, linear in linears:
    if path[-1] in cfg.targets:
      parent = module
      for part in path[:-1]:
        parent = _child(parent, part)
      setattr(parent, path[-1], LoRALinear(linear, cfg, rngs=rngs))
      wrapped.append(".".join(map(str, path)))
  return wrapped


def lora_layers(module: nnx.Module) -> list[LoRALinear]:
  return [node for _, node in nnx.iter_graph(module) if isinstance(node, LoRALinear)]


def merge_lora(module: nnx.Module) -> None:
  for layer in lora_layers(module):
    layer.merge()


def unmerge_lora(module: nnx.Module) -> None:
  for layer in lora_layers(module):
    layer.unmerge()
