"""CLIP towers against an independent NumPy float64 forward pass written from the HF tensor names and layout
(tiny random CLIPModel / CLIPVisionModel checkpoints), checkpoint errors, and the batched ImageEncoder."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file
from scipy.special import erf

from genrec.data import images as images_lib
from genrec.data.synthetic_images import make_synthetic_images, save_pngs
from genrec.models.vision import CheckpointError, ImageEncoder, load_clip, load_clip_vision

IMAGE, PATCH, D, LAYERS, HEADS, MLP, PROJ, VOCAB, POSITIONS, EOS = 32, 8, 32, 2, 4, 64, 16, 64, 16, 50
VISION_CFG = dict(
  image_size=IMAGE,
  patch_size=PATCH,
  hidden_size=D,
  num_hidden_layers=LAYERS,
  num_attention_heads=HEADS,
  intermediate_size=MLP,
  hidden_act="quick_gelu",
  layer_norm_eps=1e-5,
)
TEXT_CFG = dict(
  vocab_size=VOCAB,
  hidden_size=D,
  num_hidden_layers=LAYERS,
  num_attention_heads=HEADS,
  intermediate_size=MLP,
  max_position_embeddings=POSITIONS,
  hidden_act="gelu",
  layer_norm_eps=1e-5,
  eos_token_id=EOS,
  bos_token_id=EOS - 1,
  pad_token_id=0,
)
CLIP_CFG = dict(
  model_type="clip", architectures=["CLIPModel"], projection_dim=PROJ, vision_config=VISION_CFG, text_config=TEXT_CFG
)
LOGIT_SCALE = np.log(20.0)


def tensors_for(rng):
  r = lambda *shape: (rng.standard_normal(shape) * 0.2).astype(np.float32)
  t = {
    "vision_model.embeddings.patch_embedding.weight": r(D, 3, PATCH, PATCH),
    "vision_model.embeddings.class_embedding": r(D),
    "vision_model.embeddings.position_embedding.weight": r((IMAGE // PATCH) ** 2 + 1, D),
    "vision_model.embeddings.position_ids": np.arange((IMAGE // PATCH) ** 2 + 1, dtype=np.int64)[None],
    "text_model.embeddings.token_embedding.weight": r(VOCAB, D),
    "text_model.embeddings.position_embedding.weight": r(POSITIONS, D),
    "visual_projection.weight": r(PROJ, D),
    "text_projection.weight": r(PROJ, D),
    "logit_scale": np.array(LOGIT_SCALE, np.float32),
  }
  for ln in ("vision_model.pre_layrnorm", "vision_model.post_layernorm", "text_model.final_layer_norm"):
    t[ln + ".weight"], t[ln + ".bias"] = 1 + r(D), r(D)
  for tower in ("vision_model", "text_model"):
    for i in range(LAYERS):
      p = f"{tower}.encoder.layers.{i}."
      for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        t[f"{p}self_attn.{proj}.weight"], t[f"{p}self_attn.{proj}.bias"] = r(D, D), r(D)
      t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"] = r(MLP, D), r(MLP)
      t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"] = r(D, MLP), r(D)
      for ln in ("layer_norm1", "layer_norm2"):
        t[f"{p}{ln}.weight"], t[f"{p}{ln}.bias"] = 1 + r(D), r(D)
  return t


def write(folder, tensors, config):
  folder.mkdir(parents=True, exist_ok=True)
  save_file(tensors, str(folder / "model.safetensors"))
  (folder / "config.json").write_text(json.dumps(config))
  return folder


# ---- the independent reference: NumPy float64, one unpadded example at a time, HF names and layout
def np_ln(x, w, b, eps=1e-5):
  mu = x.mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


ACT = {"quick_gelu": lambda h: h / (1 + np.exp(-1.702 * h)), "gelu": lambda h: 0.5 * h * (1 + erf(h / np.sqrt(2)))}


def np_encoder(t, prefix, x, act, causal):
  g = lambda name: t[prefix + name].astype(np.float64)
  n = len(x)
  for i in range(LAYERS):
    p = f"encoder.layers.{i}."
    lin = lambda h, name: h @ g(p + name + ".weight").T + g(p + name + ".bias")
    h = np_ln(x, g(p + "layer_norm1.weight"), g(p + "layer_norm1.bias"))
    q, k, v = (lin(h, f"self_attn.{n_}_proj").reshape(n, HEADS, -1) for n_ in ("q", "k", "v"))
    s = np.einsum("lhd,shd->hls", q, k) / np.sqrt(D // HEADS)
    if causal:
      s = np.where(np.tril(np.ones((n, n), bool))[None], s, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    x = x + lin(np.einsum("hls,shd->lhd", a, v).reshape(n, D), "self_attn.out_proj")
    h = np_ln(x, g(p + "layer_norm2.weight"), g(p + "layer_norm2.bias"))
    x = x + lin(ACT[act](lin(h, "mlp.fc1")), "mlp.fc2")
  return x


def unit(v):
  return v / np.linalg.norm(v)


def np_image(t, image_CxHxW, project=True):
  """(pooled, patch tokens) of one image; the conv written out as a sum over channels and kernel offsets."""
  g = lambda name: t["vision_model." + name].astype(np.float64)
  grid = IMAGE // PATCH
  blocks = image_CxHxW.astype(np.float64).reshape(3, grid, PATCH, grid, PATCH)
  patches = np.einsum("dcyx,ciyjx->ijd", g("embeddings.patch_embedding.weight"), blocks).reshape(grid * grid, D)
  x = np.concatenate([g("embeddings.class_embedding")[None], patches]) + g("embeddings.position_embedding.weight")
  x = np_encoder(
    t, "vision_model.", np_ln(x, g("pre_layrnorm.weight"), g("pre_layrnorm.bias")), "quick_gelu", causal=False
  )
  pooled = np_ln(x[0], g("post_layernorm.weight"), g("post_layernorm.bias"))
  if project:
    pooled = t["visual_projection.weight"].astype(np.float64) @ pooled
  return unit(pooled), x[1:]


def np_text(t, ids, pool_at):
  g = lambda name: t["text_model." + name].astype(np.float64)
  x = g("embeddings.token_embedding.weight")[ids] + g("embeddings.position_embedding.weight")[: len(ids)]
  x = np_encoder(t, "text_model.", x, "gelu", causal=True)
  x = np_ln(x, g("final_layer_norm.weight"), g("final_layer_norm.bias"))
  return unit(t["text_projection.weight"].astype(np.float64) @ x[pool_at])


# ---- fixtures: one checkpoint, one model, for the module
@pytest.fixture(scope="module")
def tensors():
  return tensors_for(np.random.default_rng(0))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, tensors):
  return write(tmp_path_factory.mktemp("clip"), tensors, CLIP_CFG)


@pytest.fixture(scope="module")
def clip(clip_dir):
  return load_clip(clip_dir)


@pytest.fixture(scope="module")
def pixels_BxCxHxW():
  return np.random.default_rng(1).standard_normal((3, 3, IMAGE, IMAGE)).astype(np.float32)


# text rows: (ids, where HF pools: the first EOS=50). Row 0 holds an id above EOS, so the legacy rule differs there.
TEXTS = [([49, 5, 57, 50], 3), ([49, 40, 9, 30, 50, 2], 4), ([49, 50], 1)]


def padded(rows, length, pad=0):
  ids_BxL = np.full((len(rows), length), pad, np.int32)
  for b, (ids, _) in enumerate(rows):
    ids_BxL[b, : len(ids)] = ids
  return ids_BxL, np.arange(length)[None, :] < np.array([len(r) for r, _ in rows])[:, None]


def test_vision_tower_matches_numpy_reference(clip, tensors, pixels_BxCxHxW):
  pooled_BxE, tokens_BxNxD = clip.vision.encode(jnp.asarray(pixels_BxCxHxW.transpose(0, 2, 3, 1)), return_tokens=True)
  refs = [np_image(tensors, img) for img in pixels_BxCxHxW]
  pooled_err = np.abs(np.asarray(pooled_BxE) - np.stack([p for p, _ in refs])).max()
  token_err = np.abs(np.asarray(tokens_BxNxD) - np.stack([tok for _, tok in refs])).max()
  print(f"CLIP vision max abs err: pooled {pooled_err:.2e}, patch tokens {token_err:.2e}")
  assert pooled_BxE.shape == (3, PROJ) and tokens_BxNxD.shape == (3, (IMAGE // PATCH) ** 2, D)
  assert pooled_err <= 1e-5 and token_err <= 1e-5
  assert clip.vision.patch.kernel.get_metadata()["out_sharding"] == (None, None, None, "embed")


def test_text_tower_matches_numpy_reference_and_padding_is_inert(clip, tensors):
  ids_BxL, valid_BxL = padded(TEXTS, 8)
  got_BxE = np.asarray(clip.text.encode(jnp.asarray(ids_BxL), jnp.asarray(valid_BxL)))
  ref_BxE = np.stack([np_text(tensors, ids, at) for ids, at in TEXTS])
  err = np.abs(got_BxE - ref_BxE).max()
  print(f"CLIP text max abs err: {err:.2e}")
  assert err <= 1e-5
  # more padding, with the EOS id as the pad token (as the OpenAI tokenizer pads): the same vectors
  ids_BxL, valid_BxL = padded(TEXTS, POSITIONS, pad=EOS)
  longer_BxE = np.asarray(clip.text.encode(jnp.asarray(ids_BxL), jnp.asarray(valid_BxL)))
  assert np.abs(longer_BxE - got_BxE).max() <= 1e-6
  with pytest.raises(ValueError, match="exceeds max_position=16"):
    clip.text.encode(jnp.zeros((1, POSITIONS + 1), jnp.int32))


def test_legacy_eos_token_id_pools_at_the_largest_id(tmp_path, tensors):
  cfg = {**CLIP_CFG, "text_config": {**TEXT_CFG, "eos_token_id": 2}}
  text = load_clip(write(tmp_path / "legacy", tensors, cfg)).text
  ids_BxL, valid_BxL = padded(TEXTS, 8)
  got_BxE = np.asarray(text.encode(jnp.asarray(ids_BxL), jnp.asarray(valid_BxL)))
  argmax_at = [2, 4, 1]  # where each row's largest id is (57, 50, 50); row 0 is not at its EOS
  ref_BxE = np.stack([np_text(tensors, ids, at) for (ids, _), at in zip(TEXTS, argmax_at)])
  assert np.abs(got_BxE - ref_BxE).max() <= 1e-5


def test_similarity_logits_use_normalised_projections_and_logit_scale(clip, tensors, pixels_BxCxHxW):
  ids_BxL, valid_BxL = padded(TEXTS, 8)
  logits_IxT = np.asarray(
    clip.logits(jnp.asarray(pixels_BxCxHxW.transpose(0, 2, 3, 1)), jnp.asarray(ids_BxL), jnp.asarray(valid_BxL))
  )
  images = np.stack([np_image(tensors, img)[0] for img in pixels_BxCxHxW])
  texts = np.stack([np_text(tensors, ids, at) for ids, at in TEXTS])
  ref_IxT = 20.0 * images @ texts.T
  err = np.abs(logits_IxT - ref_IxT).max()
  print(f"CLIP logits max abs err: {err:.2e}")
  assert logits_IxT.shape == (3, 3)
  assert err <= 1e-4  # logits reach ±20: 1e-5 relative


def test_standalone_vision_checkpoints(tmp_path, tensors, clip, pixels_BxCxHxW):
  vision_only = {k: v for k, v in tensors.items() if k.startswith("vision_model.")}
  pixels = jnp.asarray(pixels_BxCxHxW.transpose(0, 2, 3, 1))
  with_proj = load_clip_vision(
    write(
      tmp_path / "wp",
      {**vision_only, "visual_projection.weight": tensors["visual_projection.weight"]},
      {
        **VISION_CFG,
        "model_type": "clip_vision_model",
        "projection_dim": PROJ,
        "architectures": ["CLIPVisionModelWithProjection"],
      },
    )
  )
  np.testing.assert_allclose(with_proj.encode(pixels), clip.vision.encode(pixels), atol=1e-6)
  bare = load_clip_vision(
    write(
      tmp_path / "bare",
      vision_only,
      {**VISION_CFG, "model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"]},
    )
  )
  assert bare.cfg.dim == D and bare.projection is None
  ref = np.stack([np_image(tensors, img, project=False)[0] for img in pixels_BxCxHxW])
  assert np.abs(np.asarray(bare.encode(pixels)) - ref).max() <= 1e-5


def test_checkpoint_errors_name_tensors_and_shapes(tmp_path, tensors, clip_dir):
  bad = dict(tensors)
  bad["vision_model.embeddings.patch_embedding.weight"] = np.zeros((D, 3, 4, 4), np.float32)
  with pytest.raises(
    CheckpointError,
    match=r"vision_model\.embeddings\.patch_embedding\.weight has shape "
    r"\(32, 3, 4, 4\) but the config implies \(32, 3, 8, 8\)",
  ):
    load_clip(write(tmp_path / "shape", bad, CLIP_CFG))
  bad = dict(tensors)
  del bad["text_model.encoder.layers.1.mlp.fc2.bias"]
  bad["vision_model.encoder.layers.5.mlp.fc1.weight"] = np.zeros((MLP, D), np.float32)
  with pytest.raises(
    CheckpointError,
    match=r"missing tensors \['text_model\.encoder\.layers\.1\.mlp\.fc2\.bias'\]"
    r".*unexpected tensors \['vision_model\.encoder\.layers\.5\.mlp\.fc1\.weight'\]",
  ):
    load_clip(write(tmp_path / "names", bad, CLIP_CFG))
  with pytest.raises(CheckpointError, match=r"model_type 'siglip' is not supported"):
    load_clip_vision(write(tmp_path / "siglip", tensors, {**CLIP_CFG, "model_type": "siglip"}))
  vision_dir = write(
    tmp_path / "vision",
    {k: v for k, v in tensors.items() if k.startswith("vision_model.")},
    {**VISION_CFG, "model_type": "clip_vision_model"},
  )
  with pytest.raises(CheckpointError, match="use load_clip_vision"):
    load_clip(vision_dir)
  (tmp_path / "bin").mkdir()
  (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"\x80\x02")
  with pytest.raises(CheckpointError, match="pickled weights are never loaded"):
    load_clip(tmp_path / "bin")


def test_image_encoder_batches_skips_bad_images_and_matches_reference(clip_dir, tensors, tmp_path):
  (clip_dir / "preprocessor_config.json").write_text(
    json.dumps(
      {
        "size": {"shortest_edge": IMAGE},
        "crop_size": {"height": IMAGE, "width": IMAGE},
        "resample": 3,
        "do_center_crop": True,
        "image_mean": [0.5, 0.4, 0.3],
        "image_std": [0.2, 0.25, 0.3],
      }
    )
  )
  encoder = ImageEncoder.from_pretrained(clip_dir)
  assert encoder.preprocessing.mean == (0.5, 0.4, 0.3) and encoder.dim == PROJ
  synth = make_synthetic_images(5, size=40, seed=3)  # 40 px: resized to 32 and cropped
  paths = save_pngs(synth.images_NxHxWx3, tmp_path / "png")
  images = [
    paths[0],
    tmp_path / "missing.png",
    b"not an image",
    synth.images_NxHxWx3[1],
    np.zeros((IMAGE, IMAGE, 4), np.uint8),
    paths[2],
    paths[3],
  ]
  with pytest.warns(UserWarning, match=r"3 of 7 images skipped \{'missing': 1, 'corrupt': 1, 'bad_array': 1\}"):
    emb_NxE, valid_N = encoder.encode(images, batch_size=3, progress=False)
  assert emb_NxE.shape == (7, PROJ) and emb_NxE.dtype == np.float32
  assert valid_N.tolist() == [True, False, False, True, False, True, True]
  assert not emb_NxE[~valid_N].any()
  kept = [synth.images_NxHxWx3[i] for i in (0, 1, 2, 3)]
  pixels = images_lib.preprocess_batch(kept, encoder.preprocessing)
  ref = np.stack([np_image(tensors, p.transpose(2, 0, 1))[0] for p in pixels])
  err = np.abs(emb_NxE[valid_N] - ref).max()
  print(f"ImageEncoder max abs err: {err:.2e}")
  assert err <= 1e-5
  with pytest.raises(TypeError, match="list of images"):
    encoder.encode(str(paths[0]))
  empty, empty_valid = encoder.encode([], progress=False)
  assert empty.shape == (0, PROJ) and empty_valid.shape == (0,)


def test_absent_config_keys_take_hf_defaults():
  from genrec.models.vision import ClipConfig

  cfg = ClipConfig.from_hf_config({"model_type": "clip", "text_config": {"hidden_size": 768}})
  assert (cfg.vision.hidden, cfg.vision.patch_size, cfg.vision.layers, cfg.vision.projection_dim) == (768, 32, 12, 512)
  assert (cfg.text.hidden, cfg.text.heads, cfg.text.max_position, cfg.text.eos_token_id) == (768, 8, 77, 49407)
  assert cfg.text.activation == cfg.vision.activation == "quick_gelu"
  with pytest.raises(ValueError, match="activation 'swish' is not one of"):
    ClipConfig.from_hf_config({"vision_config": {"hidden_act": "swish"}})
