"""Shared by the mmenc tuned-tower tests (tests/train/test_mmenc_lora.py, test_mmenc_image_lora.py): a frozen and a
LoRA run of the same config, the trained run with its adapters switched off, a reference module loaded by path,
and one batch's loss and gradients on an 8-device and a 1-device mesh."""

import importlib.util
from pathlib import Path

import jax
import numpy as np
from flax import nnx

import genrec
from genrec import pipeline
from genrec.config import MeshConfig
from genrec.families.content import contrastive
from genrec.train import sharding

ROOT = Path(__file__).resolve().parents[1]


def load_by_path(relative: str, name: str):
  """A test module (e.g. one holding a NumPy reference) imported from its file under the repository root."""
  spec = importlib.util.spec_from_file_location(name, ROOT / relative)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def frozen_and_lora_runs(config, cache: Path, steps: int) -> dict:
  """{"frozen" | "lora": {"dir", "init" (item vectors before training), "results", "task"}} of `config(towers,
  *overrides)` trained `steps` steps each into `cache`."""
  out = {}
  for towers in ("frozen", "lora"):
    cfg = config(towers, f"trainer.steps={steps}", f"trainer.eval_every={steps}", f"trainer.checkpoint_every={steps}")
    trainer = pipeline.trainer(cfg, cache / towers, resume=False)
    init = trainer.task.encode_items(trainer.placed, trainer.state["params"], trainer.state["other"])
    out[towers] = {"dir": cache / towers, "init": init, "results": trainer.run(), "task": trainer.task}
  return out


def without_adapters(state):
  """`state` with every adapter's B zeroed: the model over its base towers."""
  return jax.tree_util.tree_map_with_path(lambda path, x: x * 0 if "lora_b" in jax.tree_util.keystr(path) else x, state)


def trained_and_untuned(run_dir):
  """The run as `genrec.load` gives it, and its items encoded with the adapters switched off."""
  run = genrec.load(run_dir)
  task = contrastive.ItemContrastiveTask(run.config, run.dataset())
  return run, task.encode_items(run.placed, without_adapters(run.placed.params), run.placed.other)


def folded_weights(run, tower: str, tensors: dict, layers: int, names: dict[str, str]) -> dict:
  """HF-layout `tensors` with the run's q, k, v, o adapters of `tower` folded in: W + (alpha / rank) (A B)^T.
  `names`: "q" | "k" | "v" | "o" -> the HF weight name with `{i}` for the layer."""
  state = {**dict(nnx.to_flat_state(run.placed.params)), **dict(nnx.to_flat_state(run.placed.other))}

  def value(i, short, matrix):
    return np.asarray(state[(tower, "layers", i, "attn", short, matrix)].get_value(), np.float64)

  scale = run.config.model.tower_lora_alpha / run.config.model.tower_lora_rank
  out = dict(tensors)
  for i in range(layers):
    for short, name in names.items():
      key = name.format(i=i)
      out[key] = out[key] + (scale * value(i, short, "lora_a") @ value(i, short, "lora_b")).T
  return out


def assert_one_device_equals_eight(task, run_dir, run) -> tuple[float, float]:
  """Loss and gradients (adapters and fuser) of 16 training pairs for `run` (on 8 devices) equal those of the same
  run loaded on 1 device; returns the two losses."""
  batch = {k: v[:16] for k, v in task.train_dataset(process_index=0, process_count=1)[2].items()}
  one = genrec.load(run_dir, mesh=sharding.make_mesh(MeshConfig(data=1), jax.devices()[:1]))
  out = []
  for loaded in (run, one):
    placed = loaded.placed
    on_mesh = {k: jax.device_put(v, sharding.batch_sharding(placed.mesh)) for k, v in batch.items()}

    def loss_and_grads(params, other, rngs, b, graphdef=placed.graphdef):
      return jax.value_and_grad(lambda p: nnx.merge(graphdef, p, rngs, other).loss(b)[0])(params)

    loss, grads = jax.jit(loss_and_grads)(placed.params, placed.other, placed.rngs, on_mesh)
    out.append((float(loss), dict(nnx.to_flat_state(jax.tree.map(np.asarray, grads)))))
  np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-5)
  assert any("lora_a" in p for p in out[0][1]) and set(out[0][1]) == set(out[1][1])
  for path, g in out[0][1].items():
    np.testing.assert_allclose(g.get_value(), out[1][1][path].get_value(), rtol=1e-4, atol=1e-6, err_msg=str(path))
  return out[0][0], out[1][0]
