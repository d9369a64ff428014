"""A huge item table sharded over the tensor axis: per-device memory of the compiled train step falls ~1/N."""

import jax

import genrec.configs
from genrec import config as config_lib
from genrec.train import sharding
from genrec.train.memory import train_step_memory


def _memory(n: int, items: int) -> dict:
  cfg = config_lib.override(
    genrec.configs.get("sasrec:tiny"),
    [
      f"model.num_items={items}",
      "model.dim=64",
      "data.max_len=8",
      "trainer.batch_size=32",
      "mesh.data=1",
      f"mesh.tensor={n}",
    ],
  )
  return train_step_memory(cfg, sharding.make_mesh(cfg.mesh, jax.devices()[:n]))


def test_item_table_and_logits_shard_over_tensor_axis():
  one, eight = _memory(1, 1_000_000), _memory(8, 1_000_000)
  table = 1_000_064 * 64 * 4  # rows padded to a multiple of 128, float32
  assert one["parameters"] > table
  assert eight["parameters"] < one["parameters"] / 8 + 1_000_000  # the table's share: 1/8
  assert eight["peak"] < one["peak"] / 7  # logits and optimizer state too
