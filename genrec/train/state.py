"""A model placed on a mesh: abstract init, the shardings its logical axes ask for, then a jitted init that
creates every parameter directly on its devices. Shared by the trainer and `genrec.load`."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from genrec import registry
from genrec.config import ConfigError, ExperimentConfig
from genrec.models import protocols
from genrec.train import sharding


@dataclasses.dataclass
class PlacedModel:
  """graphdef + states of one model on one mesh. `rngs` (dropout streams) is rebuilt, never checkpointed:
  every train step reseeds it from (seed, step), so a resumed run draws the same masks."""

  cfg: ExperimentConfig
  mesh: jax.sharding.Mesh
  graphdef: nnx.GraphDef
  eval_graphdef: nnx.GraphDef
  params: nnx.State
  rngs: nnx.State
  other: nnx.State
  param_shardings: nnx.State
  other_shardings: nnx.State
  trainable: object = nnx.Param

  def split(self, model):
    """(graphdef, params, rngs, other) of a live model of this placement."""
    return nnx.split(model, self.trainable, nnx.RngState, ...)

  def model(self, *, train: bool = False, params=None):
    """A live nnx.Module (eval mode unless `train`) — for inference and inspection."""
    graphdef = self.graphdef if train else self.eval_graphdef
    return nnx.merge(graphdef, self.params if params is None else params, self.rngs, self.other)


def construct(cfg: ExperimentConfig):
  model_cls = registry.model_class(cfg.model_name)
  seed = cfg.trainer.seed
  sizes = {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(cfg.model)}
  sizes = {k: v for k, v in sizes.items() if isinstance(v, int) and not isinstance(v, bool)}
  negative = [f"model.{k}={v}" for k, v in sizes.items() if v < 0]
  if negative:
    raise ConfigError(f"{cfg.model_name}: integer model settings cannot be negative: {', '.join(negative)}")
  try:
    return model_cls(cfg.model, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
  except (ZeroDivisionError, TypeError) as e:  # a size of 0 reached arithmetic (e.g. model.dim=0)
    zero = [f"model.{k}=0" for k, v in sizes.items() if v == 0]
    if not zero:
      raise
    raise ConfigError(
      f"building {cfg.model_name} from its config failed ({type(e).__name__}: {e}); settings that "
      f"are 0: {', '.join(zero)} (sizes such as dim, heads and layers must be > 0)"
    ) from e


def trainable_filter(cfg: ExperimentConfig):
  """Which variables the optimizer updates: `Model.trainable(model_cfg)` (protocols.PartlyTrainable, e.g. only
  LoRA adapters and a projector over a frozen LLM), else every nnx.Param."""
  model_cls = registry.model_class(cfg.model_name)
  return model_cls.trainable(cfg.model) if protocols.provides(model_cls, protocols.PartlyTrainable) else nnx.Param


def place(cfg: ExperimentConfig, mesh, *, init: bool = True) -> PlacedModel:
  """Builds cfg's model with each parameter created on the devices its logical axes map to.

  With init=False, params and other are ShapeDtypeStructs carrying their shardings: a restore target.
  """
  trainable = trainable_filter(cfg)
  _split = lambda model: nnx.split(model, trainable, nnx.RngState, ...)
  abstract = nnx.eval_shape(lambda: construct(cfg))
  graphdef, abs_params, abs_rngs, abs_other = _split(abstract)
  abstract.eval()
  eval_graphdef = _split(abstract)[0]
  rules = cfg.mesh.rules
  p_sh = sharding.state_shardings(abs_params, mesh, rules)
  o_sh = sharding.state_shardings(abs_other, mesh, rules)
  r_sh = jax.tree.map(lambda _: sharding.replicated(mesh), abs_rngs)

  def init():
    _, params, rngs, other = _split(construct(cfg))
    return params, rngs, other

  with jax.set_mesh(mesh):
    if init:
      params, rngs, other = jax.jit(init, out_shardings=(p_sh, r_sh, o_sh))()
    else:
      rngs = jax.jit(lambda: init()[1], out_shardings=r_sh)()
      params, other = abstract_with(abs_params, p_sh), abstract_with(abs_other, o_sh)
  return PlacedModel(cfg, mesh, graphdef, eval_graphdef, params, rngs, other, p_sh, o_sh, trainable)


def opt_shardings(tx, abstract_params, param_shardings, mesh):
  """Shardings of tx's state: each parameter-shaped leaf like its parameter, the rest (counts) replicated."""
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  rep = sharding.replicated(mesh)
  return optax.tree_map_params(
    tx,
    lambda _, s: s,
    abstract_opt,
    param_shardings,
    transform_non_params=lambda _: rep,
    is_leaf=lambda x: isinstance(x, nnx.Variable),
  )


def reseed(rngs_state, key):
  """Fresh dropout keys for one step: stream i gets fold_in(key, i), counters restart at 0."""
  leaves, treedef = jax.tree.flatten(rngs_state)
  out = []
  for i, leaf in enumerate(leaves):
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      out.append(jax.random.fold_in(key, i))
    else:
      out.append(jnp.zeros_like(leaf))
  return jax.tree.unflatten(treedef, out)


def cast_floating(tree, dtype):
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def abstract_with(tree, shardings):
  """ShapeDtypeStructs of `tree` carrying `shardings`."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
