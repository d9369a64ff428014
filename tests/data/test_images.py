"""Image preprocessing (CLIPImageProcessor's resize/crop/normalise checked by hand), bad inputs raised or counted,
and the synthetic image generator."""

import io

import numpy as np
import pytest
from PIL import Image

from genrec.data import images as im
from genrec.data.synthetic_images import MAX_CLASSES, class_style, make_synthetic_images, save_pngs

MEAN, STD = np.array(im.CLIP_MEAN), np.array(im.CLIP_STD)


def png_bytes(array, mode=None):
  buf = io.BytesIO()
  Image.fromarray(array, mode).save(buf, format="PNG")
  return buf.getvalue()


def by_hand(rgb):
  """(x / 255 - mean) / std, channel by channel, in float64."""
  return (np.asarray(rgb, np.float64) / 255.0 - MEAN) / STD


def test_solid_colour_is_normalised_with_clip_mean_and_std():
  out = im.preprocess(np.full((7, 5, 3), (10, 128, 250), np.uint8), im.ImageConfig(image_size=4))
  assert out.shape == (4, 4, 3) and out.dtype == np.float32
  expected = [
    (10 / 255 - 0.48145466) / 0.26862954,
    (128 / 255 - 0.4578275) / 0.26130258,
    (250 / 255 - 0.40821073) / 0.27577711,
  ]  # ≈ [-1.6462, 0.2310, 2.0745]
  np.testing.assert_allclose(out.reshape(-1, 3), np.tile(expected, (16, 1)), atol=1e-6)


@pytest.mark.parametrize("h, w, top, left", [(4, 8, 0, 2), (9, 4, 2, 0), (4, 5, 0, 0), (4, 7, 0, 1), (4, 4, 0, 0)])
def test_centre_crop_offsets_round_down(h, w, top, left):
  # the shortest side is already image_size, so no resampling: the crop is exact
  rgb = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
  out = im.preprocess(rgb, im.ImageConfig(image_size=4))
  np.testing.assert_allclose(out, by_hand(rgb[top : top + 4, left : left + 4]), atol=1e-6)


def test_resize_shortest_side_bicubic_then_crop():
  rgb = np.random.default_rng(0).integers(0, 256, (3, 7, 3), np.uint8)
  out = im.preprocess(rgb, im.ImageConfig(image_size=2))
  # shortest side 3 → 2, long side int(2 * 7 / 3) = 4 (truncated, as HF); Pillow's bicubic is the reference
  resized = np.asarray(Image.fromarray(rgb).resize((4, 2), Image.Resampling.BICUBIC))
  np.testing.assert_allclose(out, by_hand(resized[0:2, 1:3]), atol=1e-6)
  # resize_shortest > image_size: 3x7 → 3x7 (no resize), crop 2x2 at top 0, left 2
  out = im.preprocess(rgb, im.ImageConfig(image_size=2, resize_shortest=3))
  np.testing.assert_allclose(out, by_hand(rgb[0:2, 2:4]), atol=1e-6)


def test_hf_preprocessor_config_is_read():
  cfg = im.ImageConfig.from_hf_preprocessor(
    {
      "size": {"shortest_edge": 256},
      "crop_size": {"height": 224, "width": 224},
      "resample": 3,
      "do_center_crop": True,
      "image_mean": [0.5, 0.5, 0.5],
      "image_std": [0.25, 0.25, 0.25],
    }
  )
  assert (cfg.image_size, cfg.shortest, cfg.mean, cfg.std) == (224, 256, (0.5,) * 3, (0.25,) * 3)
  with pytest.raises(ValueError, match="not CLIP's"):
    im.ImageConfig.from_hf_preprocessor({"size": {"shortest_edge": 224}, "resample": 2})


def test_other_modes_are_converted_to_rgb_when_decoding():
  rgba = np.array([[[200, 10, 10, 0], [200, 10, 10, 255], [200, 10, 10, 128]]], np.uint8)
  rgb = im.decode(png_bytes(rgba, "RGBA"))
  a = 128 / 255
  assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
  assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [200, 10, 10]  # transparent → white
  np.testing.assert_allclose(rgb[0, 2], np.array([200, 10, 10]) * a + 255 * (1 - a), atol=1)
  assert im.decode(png_bytes(np.array([[0, 77]], np.uint8), "L")).tolist() == [[[0, 0, 0], [77, 77, 77]]]
  palette = Image.new("P", (2, 1))
  palette.putpalette([0, 0, 0, 12, 34, 56] + [0] * 762)
  palette.putpixel((1, 0), 1)
  buf = io.BytesIO()
  palette.save(buf, format="PNG")
  assert im.decode(buf.getvalue())[0, 1].tolist() == [12, 34, 56]


def test_bad_inputs_raise_an_image_error_naming_the_item(tmp_path):
  good = png_bytes(np.zeros((8, 8, 3), np.uint8))
  cfg = im.ImageConfig(image_size=4)
  with pytest.raises(im.CorruptImageError, match=r"images\[1\]: not a readable image \(13 bytes"):
    im.preprocess_batch([good, b"not an image!"], cfg)
  with pytest.raises(im.CorruptImageError, match=r"images\[0\]"):
    im.preprocess_batch([good[: len(good) // 2]], cfg)  # a truncated PNG
  with pytest.raises(im.MissingImageError, match=r"images\[0\] \(.*nowhere\.png\): cannot be read"):
    im.preprocess_batch([tmp_path / "nowhere.png"], cfg)
  with pytest.raises(im.MissingImageError, match=r"image file .*nowhere\.png"):
    im.preprocess(tmp_path / "nowhere.png", cfg)
  for array, what in [
    (np.zeros((8, 8, 4), np.uint8), "has 4 channels"),
    (np.zeros((8, 8, 2), np.uint8), "has 2"),
    (np.zeros((8, 8), np.uint8), "no channel axis"),
    (np.zeros((8, 8, 3)), "dtype is float64"),
  ]:
    with pytest.raises(im.BadArrayError, match=what):
      im.preprocess(array, cfg, name="item 7")
  with pytest.raises(im.ImageError, match="int is not an image source"):
    im.preprocess(7, cfg)


def test_load_images_counts_and_skips_what_does_not_load(tmp_path):
  rng = np.random.default_rng(0)
  a, b = (rng.integers(0, 256, (6, 9, 3), np.uint8) for _ in range(2))
  (tmp_path / "a.png").write_bytes(png_bytes(a))
  (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
  sources = [
    tmp_path / "a.png",
    tmp_path / "gone.png",
    tmp_path / "broken.jpg",
    b"",
    b,
    np.zeros((6, 6, 4), np.uint8),
    str(tmp_path),
  ]  # the last is a folder
  cfg = im.ImageConfig(image_size=4)
  loaded = im.load_images(sources, cfg)
  assert loaded.valid_N.tolist() == [True, False, False, False, True, False, False]
  assert loaded.counts == {"ok": 2, "missing": 2, "corrupt": 2, "bad_array": 1}
  assert len(loaded.errors) == 5 and "images[1]" in loaded.errors[0] and "gone.png" in loaded.errors[0]
  assert not loaded.pixels_NxSxSx3[~loaded.valid_N].any()
  np.testing.assert_array_equal(loaded.pixels_NxSxSx3[0], im.preprocess(a, cfg))
  np.testing.assert_array_equal(loaded.pixels_NxSxSx3[4], im.preprocess(b, cfg))
  assert im.load_images([], cfg).pixels_NxSxSx3.shape == (0, 4, 4, 3)


def test_synthetic_images_are_deterministic(tmp_path):
  first, again = make_synthetic_images(12, seed=5), make_synthetic_images(12, seed=5)
  other = make_synthetic_images(12, seed=6)
  assert first.images_NxHxWx3.shape == (12, 32, 32, 3) and first.images_NxHxWx3.dtype == np.uint8
  assert np.array_equal(first.images_NxHxWx3, again.images_NxHxWx3) and first.texts == again.texts
  assert np.array_equal(first.labels_N, again.labels_N)
  assert not np.array_equal(first.images_NxHxWx3, other.images_NxHxWx3)
  assert np.bincount(first.labels_N).tolist() == [3, 3, 3, 3]
  for text, k in zip(first.texts, first.labels_N):
    colour, _, pattern = class_style(int(k))
    assert colour in text and pattern in text
  paths = save_pngs(first.images_NxHxWx3[:2], tmp_path)
  assert np.array_equal(im.decode(paths[1]), first.images_NxHxWx3[1])  # PNG is lossless
  with pytest.raises(ValueError, match="num_classes must be in"):
    make_synthetic_images(4, num_classes=MAX_CLASSES + 1)


def nearest_centroid_accuracy(features_NxF, labels_N):
  classes = np.unique(labels_N)
  centroids_KxF = np.stack([features_NxF[labels_N == k].mean(0) for k in classes])
  dist_NxK = ((features_NxF[:, None, :] - centroids_KxF[None]) ** 2).sum(-1)
  return (classes[dist_NxK.argmin(1)] == labels_N).mean()


def test_synthetic_classes_are_separable():
  few = make_synthetic_images(64, num_classes=8, seed=0)
  mean_colour = few.images_NxHxWx3.reshape(64, -1, 3).mean(1)
  assert nearest_centroid_accuracy(mean_colour, few.labels_N) == 1.0  # ≤ 8 classes: colour alone
  many = make_synthetic_images(128, num_classes=MAX_CLASSES, seed=0)
  x = many.images_NxHxWx3.astype(np.float64).mean(-1)
  features = np.concatenate(
    [
      many.images_NxHxWx3.reshape(128, -1, 3).mean(1),
      10 * x.mean(2).std(1, keepdims=True),
      10 * x.mean(1).std(1, keepdims=True),
    ],
    1,
  )
  assert nearest_centroid_accuracy(features, many.labels_N) == 1.0  # colour + row/column stripes
  # and mean colour alone is not enough there: the pattern carries part of the class
  assert nearest_centroid_accuracy(features[:, :3], many.labels_N) < 1.0
