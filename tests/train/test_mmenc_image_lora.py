"""mmenc with a LoRA-tuned image tower (model.towers=lora, model.tower_lora_towers=[image]) on synthetic_mm's 64
items at 32 px: a tiny random CLIPModel written as a HF folder (tests/models/test_clip.py's tensors) is the image
tower, so the tuned tower is checked against that file's NumPy float64 CLIP with the adapters folded in. One
frozen and one LoRA run per module are shared."""

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

import genrec
import genrec.configs
from fixtures_lora import (
  assert_one_device_equals_eight,
  folded_weights,
  frozen_and_lora_runs,
  load_by_path,
  trained_and_untuned,  # tests/ is on sys.path
  without_adapters,
)
from genrec import config as config_lib
from genrec import pipeline
from genrec.data import images as images_lib
from genrec.families.content import contrastive, sources, tuned_towers

STEPS = 20
QUIET = ["trainer.progress=false", "mesh.data=1"]
REF = load_by_path("tests/models/test_clip.py", "clip_reference")  # its tensors and NumPy float64 CLIP


@pytest.fixture(scope="module")
def tower(tmp_path_factory):
  return REF.write(tmp_path_factory.mktemp("clip") / "clip", REF.tensors_for(np.random.default_rng(0)), REF.CLIP_CFG)


def mm_config(image_encoder, towers="lora", *extra):
  """mmenc:tiny (image + genre + ID) with the image tower's widths taken from the data."""
  return config_lib.override(
    genrec.configs.get("mmenc:tiny"),
    [
      "model.input_dims=[]",
      f"model.image_encoder={image_encoder}",
      f"model.towers={towers}",
      "model.tower_lora_towers=[image]",
      "model.tower_lora_rank=4",
      *QUIET,
      *extra,
    ],
  )


@pytest.fixture(scope="module")
def runs(stage_cache, tower):
  """A frozen-tower and a LoRA-image-tower run of STEPS steps, with each one's item vectors before training."""
  return frozen_and_lora_runs(lambda *o: mm_config(tower, *o), stage_cache, STEPS)


def test_fresh_image_adapter_gives_the_frozen_tower_vectors(runs):
  pixels = runs["lora"]["task"].features.tokens["image_pixels"]
  assert pixels.dtype == np.uint8 and pixels.shape == (65, 32, 32, 3) and not pixels[0].any()
  diff = np.abs(runs["lora"]["init"] - runs["frozen"]["init"]).max()
  print(f"fresh LoRA image tower vs frozen tower outputs: max abs diff {diff:.2e}")
  assert diff <= 1e-5 and np.abs(runs["lora"]["init"][1:]).max() > 0.01


@pytest.fixture(scope="module")
def trained(runs):
  """The lora run as `genrec.load` gives it, and its items encoded with every adapter's B zeroed."""
  return trained_and_untuned(runs["lora"]["dir"])


def test_training_moves_only_the_image_adapters_and_export_sees_them(runs, trained, tower, tmp_path):
  from genrec import cli
  from genrec.models.vision.hf_import import vision_table

  run, untuned = trained
  assert run.model.text_tower is None
  tensors = load_file(str(tower / "model.safetensors"))
  base = dict(nnx.to_flat_state(run.placed.other))
  table = vision_table(run.config.model.image_tower)
  for name, path in table.items():
    t = tensors[name]
    expected = t.transpose(2, 3, 1, 0) if t.ndim == 4 else t.T if path[-1] == "kernel" else t
    np.testing.assert_array_equal(np.asarray(base[("image_tower", *path)].get_value()), expected, err_msg=name)
  trainable = dict(nnx.to_flat_state(run.placed.params))
  assert all("lora_" in str(p[-1]) for p in trainable if p[0] == "image_tower")
  adapters = [np.abs(np.asarray(v.get_value())).max() for p, v in trainable.items() if p[-1] == "lora_b"]
  assert len(adapters) == REF.LAYERS * 4 and min(adapters) > 1e-4  # q, k, v, o of each layer moved

  out = tmp_path / "items.npy"
  assert cli.main(["export-embeddings", str(runs["lora"]["dir"]), "--out", str(out)]) == 0
  exported = np.load(out, allow_pickle=False)
  saved, _ = sources.read_item_embeddings(runs["lora"]["dir"])
  np.testing.assert_allclose(exported, saved, atol=1e-6)
  gap = np.abs(untuned - exported).max()
  print(f"exported (tuned image tower) vs the same fuser over the base tower: max abs diff {gap:.4f}")
  assert gap > 1e-3


def test_tuned_image_tower_matches_numpy_clip_with_the_adapters_folded_in(runs, trained, tower):
  run, _ = trained
  names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}
  layer = "vision_model.encoder.layers.{i}.self_attn."
  weights = folded_weights(
    run,
    "image_tower",
    load_file(str(tower / "model.safetensors")),
    REF.LAYERS,
    {short: f"{layer}{n}.weight" for short, n in names.items()},
  )
  items = np.array([1, 5, 9, 64])
  rgb = runs["lora"]["task"].features.tokens["image_pixels"][items]
  pre = run.config.model.image_preprocessing
  normalised = [images_lib.normalize(x, pre).transpose(2, 0, 1) for x in rgb]
  expected = np.stack([REF.np_image(weights, x)[0] for x in normalised])
  base = np.stack([REF.np_image(load_file(str(tower / "model.safetensors")), x)[0] for x in normalised])
  got = np.asarray(jax.jit(lambda m, p: m.image_tower.encode(m._normalize(p)))(run.model, rgb))
  diff, moved = np.abs(got - expected).max(), np.abs(expected - base).max()
  print(f"tuned image tower vs NumPy CLIP with folded adapters: max abs diff {diff:.2e} (adapters move it {moved:.4f})")
  assert diff <= 1e-5 and moved > 1e-3


def test_absent_image_rows_are_unused_and_add_items_uses_the_tuned_tower(runs, trained, tmp_path):
  from PIL import Image

  from genrec.data.synthetic_mm import item_images
  from genrec.families.add_items import NewItem, content_vectors

  run, untuned = trained
  cfg = runs["lora"]["task"].cfg
  modalities = list(run.config.model.modalities)
  encode = jax.jit(lambda m, b: m.encode(b))
  rows = runs["lora"]["task"].features.rows(np.array([5, 6]))
  rows["present"][:, modalities.index("id")] = False
  rows["present"][1, modalities.index("image")] = False
  reference = np.asarray(encode(run.model, rows))
  noisy = {**rows, "image_pixels": rows["image_pixels"].copy()}
  noisy["image_pixels"][1] = np.random.default_rng(0).integers(0, 256, noisy["image_pixels"][1].shape)
  np.testing.assert_array_equal(np.asarray(encode(run.model, noisy)), reference)

  Image.fromarray(item_images(cfg.data)[5]).save(tmp_path / "five.png")
  data = run.dataset()
  genres = lambda i: tuple(data.genre_names[g] for g in np.flatnonzero(data.item_genres[i]))  # noqa: E731
  items = [NewItem("a", "a", "a", genres(5), tmp_path / "five.png", 2), NewItem("b", "b", "b", genres(6), None, 3)]
  data_cfg = config_lib.override(cfg, [f"data.item_embeddings=run:{runs['lora']['dir']}"]).data
  vectors, counts = content_vectors(data_cfg, items)
  diff = np.abs(vectors - reference).max()
  untuned_model = nnx.merge(nnx.graphdef(run.model), without_adapters(nnx.state(run.model)))
  base = np.abs(np.asarray(encode(untuned_model, rows))[0] - vectors[0]).max()
  print(
    f"add-items vector vs the trained model on the same image: max abs diff {diff:.2e} (the base tower's "
    f"vector is {base:.4f} away)"
  )
  assert counts == {"images_skipped": 0} and diff <= 1e-5 and base > 1e-3


def test_one_device_equals_eight_for_an_image_lora_step(runs, trained):
  eight, one = assert_one_device_equals_eight(runs["lora"]["task"], runs["lora"]["dir"], trained[0])
  print(f"image lora loss on 8 devices {eight:.6f}, on 1 device {one:.6f}")


@pytest.mark.parametrize(
  "overrides, error, message",
  [
    (
      ["model.modalities=[genre,id]"],
      ValueError,
      r"model.towers='lora' tunes the image tower, but model.modalities=\('genre', 'id'\) has no 'image'",
    ),
    (["model.tower_lora_towers=[audio]"], ValueError, r"model.tower_lora_towers=\('audio',\): need distinct tower"),
    (["model.tower_lora_targets=[q,fc1]"], ValueError, r"\['fc1'\] not among the image tower's linear layers"),
  ],
)
def test_bad_image_lora_config_is_a_clear_error(tmp_path, overrides, error, message):
  cfg = mm_config("random:tiny", "lora", *overrides)
  with pytest.raises(error, match=message):
    pipeline.trainer(cfg, tmp_path / "run")


TABLE = 65 * 32 * 32 * 3  # bytes of synthetic_mm's pixel table at 32 px


@pytest.mark.parametrize("budget", [TABLE, TABLE - 1], ids=["table", "lazy"])
def test_items_whose_image_does_not_load_have_zero_pixels_and_no_image_modality(monkeypatch, capsys, budget):
  """Within the budget the pixels are one table; over it, LazyPixels decodes each request: the same rows."""
  from genrec.data import load_dataset
  from genrec.data.synthetic_mm import item_images

  cfg = mm_config("random:tiny")
  images = list(item_images(cfg.data))
  images[3], images[7] = None, b"not an image"
  monkeypatch.setattr(tuned_towers, "item_images", lambda data_cfg: images)
  monkeypatch.setattr(tuned_towers, "PIXEL_BUDGET_BYTES", budget)
  with pytest.warns(UserWarning, match=r"2 of 64 images skipped \{'missing': 1, 'corrupt': 1\}"):
    data = load_dataset(cfg.data)
    memo = getattr(data, "_mm_features", {})
    object.__setattr__(data, "_mm_features", {})  # item_features memoises on the (shared) dataset object
    try:
      features = contrastive.item_features(data, cfg)
    finally:
      object.__setattr__(data, "_mm_features", memo)
  lazy = isinstance(features.tokens["image_pixels"], tuned_towers.LazyPixels)
  assert lazy == (budget < TABLE) and ("over the" in capsys.readouterr().err) == lazy
  image = features.present[:, list(cfg.model.modalities).index("image")]
  assert np.flatnonzero(~image).tolist() == [0, 3, 7]
  pixels_2x2xSxSx3 = features.rows(np.array([[3, 5], [7, 64]]))["image_pixels"]  # two pairs, as in training
  assert pixels_2x2xSxSx3.shape == (2, 2, 32, 32, 3) and pixels_2x2xSxSx3.dtype == np.uint8
  assert not pixels_2x2xSxSx3[:, 0].any()
  np.testing.assert_array_equal(pixels_2x2xSxSx3[:, 1], np.stack([images[5], images[64]]))  # 32 px: no resize
