"""Inputs and base weights of the towers an mmenc run tunes inside its forward pass (model.towers=lora,
`MMEncConfig.lora_towers`).

Each tuned tower swaps its modality's frozen vectors for what the tower reads, one row per item 0..N (row 0
padding), held by the task's `ItemFeatures.tokens` and gathered per batch like any feature:
  text   "text_ids" int32 [N+1, L], "text_valid" bool [N+1, L]: each item's text (the texts the frozen tower
         embeds) tokenized by the tower's tokenizer.json, cut to model.text_max_length, padded.
  image  "image_pixels" uint8 [N+1, S, S, 3]: each item's image resized and centre-cropped by the image tower's
         preprocessing (`ImageEncoder.pixels`), normalised inside the jitted encode. An item whose image does
         not load has zeros there and its image presence False (the fuser masks it). The table is held in host
         memory when it fits `PIXEL_BUDGET_BYTES`; a larger one is `LazyPixels`: the same rows, decoded from
         the image files each time a batch (or an evaluation chunk) gathers them.
`load_towers` puts the towers' pretrained weights (the text tower's HF folder of data.item_embeddings; the image
tower of model.image_encoder) into a freshly placed model's frozen state, so the run's checkpoint carries them.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from flax import nnx

from genrec.config import ConfigError, ExperimentConfig
from genrec.families.content.images import image_encoder, item_images
from genrec.families.content.sources import item_texts

PIXEL_BUDGET_BYTES = 2 * 2**30


def text_tower_folder(source: str) -> Path:
  """The HF folder behind data.item_embeddings=text:minilm | text:HF_DIR: the tower model.towers=lora tunes."""
  from genrec.models.text.encoder import minilm_path

  kind, _, arg = source.partition(":")
  if kind != "text":
    raise ConfigError(
      f"data.item_embeddings={source!r} is a fixed table with no tower to tune; model.towers=lora "
      "needs a text tower: data.item_embeddings=text:minilm or text:HF_DIR"
    )
  return minilm_path() if arg in ("", "minilm") else Path(arg).expanduser()


def _text(data, cfg: ExperimentConfig, progress: bool) -> tuple[dict, np.ndarray, dict]:
  from genrec.models.text import hf_import
  from genrec.models.text.encoder import folder_tokens

  del progress
  folder = text_tower_folder(cfg.data.item_embeddings)
  ids, valid = folder_tokens(folder, item_texts(data, cfg.data.empty_item_text), cfg.model.text_max_length)
  inputs = {"text_ids": _padded(ids), "text_valid": _padded(valid)}
  present = np.array([bool(t.strip()) for t in data.item_text])
  return inputs, present, {"text_tower": hf_import.load_config(folder), "text_folder": str(folder)}


def _image(data, cfg: ExperimentConfig, progress: bool) -> tuple[dict, np.ndarray, dict]:
  import sys

  from genrec.models.vision.encoder import load_pixels

  spec = cfg.model.image_encoder
  encoder = image_encoder(spec)
  pre = encoder.preprocessing
  table = (data.num_items + 1) * pre.image_size**2 * 3
  images = item_images(cfg.data)[1:]
  lazy = table > PIXEL_BUDGET_BYTES
  if lazy:
    print(
      f"the {len(images)} item images of {data.name} at {pre.image_size} px take {table / 2**30:.2f} GiB, over "
      f"the {PIXEL_BUDGET_BYTES / 2**30:g} GiB budget for a pixel table: checking which load now, then each "
      "batch decodes its own",
      file=sys.stderr,
    )
  elif progress:
    print(f"preprocessing {len(images)} item images of {data.name} for {spec}", file=sys.stderr)
  pixels, valid = load_pixels(images, pre, keep=not lazy, progress=progress)
  valid = _padded(valid)
  pixels = LazyPixels([None, *images], valid, pre) if lazy else _padded(pixels)
  return {"image_pixels": pixels}, valid, {"image_tower": encoder.model.cfg, "image_preprocessing": pre}


class LazyPixels:
  """A pixel table [N+1, S, S, 3] uint8 that is never held: `pixels[items]` (any shape of item ids) decodes and
  preprocesses those items' images on the spot; items whose image did not load when checked get zeros."""

  def __init__(self, sources: list, valid: np.ndarray, preprocessing):
    self.sources, self.valid, self.preprocessing = sources, valid, preprocessing
    size = preprocessing.image_size
    self.shape, self.dtype = (len(sources), size, size, 3), np.dtype(np.uint8)

  def __getitem__(self, items) -> np.ndarray:
    from genrec.models.vision.encoder import load_pixels

    flat = np.asarray(items).reshape(-1)
    out = np.zeros((len(flat), *self.shape[1:]), np.uint8)
    ok = self.valid[flat]
    if ok.any():
      out[ok] = load_pixels([self.sources[i] for i in flat[ok]], self.preprocessing, int(ok.sum()), progress=False)[0]
    return out.reshape(*np.shape(items), *self.shape[1:])


TUNED = {"text": _text, "image": _image}


def tuned_inputs(
  modality: str, data, cfg: ExperimentConfig, *, progress: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
  """(the tower's inputs {name: [N+1, ...]}, presence bool [N+1], the ItemFeatures fields it sets)."""
  return TUNED[modality](data, cfg, progress)


def _padded(x_NxK: np.ndarray) -> np.ndarray:
  """Row 0 (the padding item) of zeros, then x."""
  return np.concatenate([np.zeros_like(x_NxK[:1]), x_NxK])


def load_towers(placed, features) -> None:
  """Puts each tuned tower's pretrained weights into a placed mmenc's frozen state (`placed.other`)."""
  model = placed.cfg.model
  towers = {}
  if "text" in model.lora_towers:
    from genrec.models.text import load_bert

    towers["text_tower"] = load_bert(features.text_folder, config=model.text_tower)
  if "image" in model.lora_towers:
    towers["image_tower"] = image_encoder(model.image_encoder).model
  other = dict(nnx.to_flat_state(placed.other))
  shardings = dict(nnx.to_flat_state(placed.other_shardings))
  for name, tower in towers.items():
    for path, var in nnx.to_flat_state(nnx.state(tower, nnx.Param)):
      full = (name, *path)
      if full not in other or other[full].shape != var.shape:
        raise ConfigError(
          f"the pretrained {name} has {'/'.join(map(str, path))} of shape {var.shape}; the model "
          f"expects {other[full].shape if full in other else 'no such weight'}"
        )
      other[full] = other[full].replace(jax.device_put(var.get_value(), shardings[full].get_value()))
  placed.other = nnx.from_flat_state(list(other.items()))
