"""A bare CLIPVisionModel saved by transformers >= 5 names its tensors without the `vision_model.` prefix
(`embeddings.patch_embedding.weight`, …; transformers 4.x, CLIPModel and CLIPVisionModelWithProjection keep it):
both spellings load to the same tower, each tensor where its name says."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from genrec.models.vision import CheckpointError, load_clip_vision

IMAGE, PATCH, D, MLP = 16, 8, 16, 32
CONFIG = dict(
  model_type="clip_vision_model",
  architectures=["CLIPVisionModel"],
  image_size=IMAGE,
  patch_size=PATCH,
  hidden_size=D,
  num_hidden_layers=1,
  num_attention_heads=2,
  intermediate_size=MLP,
)


def bare_tensors() -> dict[str, np.ndarray]:
  """Every tensor of a 1-layer tower as transformers 5 writes a CLIPVisionModel (no prefix)."""
  rng = np.random.default_rng(0)
  r = lambda *shape: rng.standard_normal(shape).astype(np.float32)
  t = {
    "embeddings.patch_embedding.weight": r(D, 3, PATCH, PATCH),
    "embeddings.class_embedding": r(D),
    "embeddings.position_embedding.weight": r((IMAGE // PATCH) ** 2 + 1, D),
  }
  for ln in ("pre_layrnorm", "post_layernorm", "encoder.layers.0.layer_norm1", "encoder.layers.0.layer_norm2"):
    t[ln + ".weight"], t[ln + ".bias"] = 1 + r(D), r(D)
  for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
    t[f"encoder.layers.0.self_attn.{proj}.weight"], t[f"encoder.layers.0.self_attn.{proj}.bias"] = r(D, D), r(D)
  t["encoder.layers.0.mlp.fc1.weight"], t["encoder.layers.0.mlp.fc1.bias"] = r(MLP, D), r(MLP)
  t["encoder.layers.0.mlp.fc2.weight"], t["encoder.layers.0.mlp.fc2.bias"] = r(D, MLP), r(D)
  return t


def write(folder, tensors):
  folder.mkdir()
  save_file(tensors, str(folder / "model.safetensors"))
  (folder / "config.json").write_text(json.dumps(CONFIG))
  return folder


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
  tensors = bare_tensors()
  root = tmp_path_factory.mktemp("clip_names")
  v5 = load_clip_vision(write(root / "v5", tensors))
  v4 = load_clip_vision(write(root / "v4", {"vision_model." + k: v for k, v in tensors.items()}))
  return tensors, v5, v4


def test_bare_names_place_each_tensor_where_its_name_says(towers):
  t, v5, _ = towers
  np.testing.assert_array_equal(v5.cls[...], t["embeddings.class_embedding"])
  np.testing.assert_array_equal(v5.patch.kernel[...], t["embeddings.patch_embedding.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(v5.post_norm.scale[...], t["post_layernorm.weight"])
  np.testing.assert_array_equal(v5.pre_norm.bias[...], t["pre_layrnorm.bias"])
  np.testing.assert_array_equal(v5.layers[0].attn.q.kernel[...], t["encoder.layers.0.self_attn.q_proj.weight"].T)
  np.testing.assert_array_equal(v5.layers[0].fc2.bias[...], t["encoder.layers.0.mlp.fc2.bias"])


def test_bare_and_prefixed_checkpoints_give_the_same_tower(towers):
  _, v5, v4 = towers
  pixels = jnp.asarray(np.random.default_rng(1).standard_normal((2, IMAGE, IMAGE, 3)), jnp.float32)
  np.testing.assert_array_equal(v5.encode(pixels), v4.encode(pixels))
  assert v5.projection is None and v5.cfg.dim == D


def test_bare_checkpoint_errors_name_its_own_tensors(tmp_path):
  tensors = bare_tensors()
  del tensors["post_layernorm.bias"]
  tensors["embeddings.extra"] = np.zeros(3, np.float32)
  with pytest.raises(CheckpointError, match=r"missing tensors \['post_layernorm.bias'\].*'embeddings.extra'"):
    load_clip_vision(write(tmp_path / "bad", tensors))
