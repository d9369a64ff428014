"""The mesh, the logical-axis rules, and the shardings every jitted function declares."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from genrec.config import ConfigError, MeshConfig

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def make_mesh(cfg: MeshConfig, devices=None) -> jax.sharding.Mesh:
  devices = list(devices if devices is not None else jax.devices())
  sizes = [cfg.data, cfg.fsdp, cfg.tensor]
  if sizes.count(-1) > 1:
    raise ConfigError(f"mesh: at most one axis may be -1, got data={cfg.data} fsdp={cfg.fsdp} tensor={cfg.tensor}")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ConfigError(f"mesh: {len(devices)} devices do not divide into axes of product {known}")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) > len(devices) or min(sizes) < 1:
    raise ConfigError(
      f"mesh: data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} needs "
      f"{math.prod(sizes)} devices; {len(devices)} available"
    )
  devices = np.asarray(devices[: math.prod(sizes)]).reshape(sizes)
  return jax.sharding.Mesh(devices, MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def _rules_table(rules) -> dict[str, tuple[str, ...]]:
  table = {}
  for row in rules:
    if not row:
      raise ConfigError("mesh.rules: an empty row; each row is (logical_name, mesh_axis, ...)")
    name, *axes = row
    bad = [a for a in axes if a not in MESH_AXES]
    if bad:
      raise ConfigError(f"mesh.rules: {name!r} maps to unknown mesh axes {bad}; mesh axes are {MESH_AXES}")
    table[name] = tuple(axes)
  return table


def logical_to_spec(names, shape, mesh, rules) -> P:
  """Maps logical axis names to a PartitionSpec, replicating any dimension the mesh axes do not divide
  and never using one mesh axis twice."""
  table = _rules_table(rules)
  used: set[str] = set()
  spec = []
  for name, dim in zip(names, shape):
    if name is None:
      spec.append(None)
      continue
    if name not in table:
      raise ConfigError(f"logical axis {name!r} has no row in mesh.rules (rows: {sorted(table)})")
    axes = tuple(a for a in table[name] if a not in used and mesh.shape[a] > 1)
    size = math.prod(mesh.shape[a] for a in axes)
    if not axes or dim % size:
      spec.append(None)
      continue
    used.update(axes)
    spec.append(axes if len(axes) > 1 else axes[0])
  return P(*spec)


def state_shardings(abstract_state, mesh, rules):
  """NamedShardings for an nnx.State from each Variable's logical `out_sharding` metadata."""

  def one(var):
    names = var.get_metadata().get("out_sharding") or (None,) * len(var.shape)
    return var.replace(NamedSharding(mesh, logical_to_spec(names, var.shape, mesh, rules)))

  return jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh) -> NamedSharding:
  """Leading (batch) dimension split over the data-parallel axes."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_parallel_size(mesh) -> int:
  return math.prod(mesh.shape[a] for a in BATCH_AXES)
