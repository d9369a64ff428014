"""`genrec add-items RUN items.csv`: new catalogue items for a trained run, without retraining it (an overlay).

The CSV has a header row: `item_id` (new ids), `title` and/or `text` (one of them is required: `text` is
embedded as is, else the text is assembled from `title`, optional `year` and `genres` the way the catalogue's
item text is), optional `genres` (`|`-separated names) and optional `image` (a path; relative paths are read
from the CSV's folder).

  1. Content: the run's content stage (`data.item_embeddings`) encodes each new item: the text tower
     (text:minilm, text:HF_DIR) or the multimodal encoder run (run:MODEL:PRESET, run:DIR: its towers, frozen or
     LoRA-tuned, and fuser; a new item has no ID embedding). A fixed table (npy:, random:) cannot encode new items.
  2. TIGER: the run's trained tokenizer stage (`model.tokenizer`, the exact table version the model was trained
     on) turns the content into a code prefix; the collision digit is the smallest one no item with that prefix
     uses. ContentRec: the content vector is all it needs. An ID-only model (SASRec, ...) cannot take new items.
  3. The run artifact "added_items" (`genrec.artifacts`, RUN/artifacts/added_items.json): the array `codes` or
     `content` (every added item so far, in id order) and meta {"revision": K, "kind", "base" (the run it
     fits), "items": raw ids, titles, texts}; written atomically, so a reader sees the previous revision or the
     new one. The checkpoint is never written.

`genrec.load(RUN)` applies the overlay (`apply_overlay`): new items take ids N+1.. in the order added, the model is
rebuilt for the grown catalogue with the same parameters and its item tables extended (TIGER: item -> code and
valid-prefix tables; ContentRec: the content table), and `Run.recommend` returns them by raw id and title.

Images: a path that does not exist is an error naming the CSV line; an image file that does not decode is a
counted skip (the item is encoded without its image; the summary counts it). Items with an image are only
read when the content stage has an image tower.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from genrec import artifacts
from genrec.data import load_dataset
from genrec.errors import ArtifactError
from genrec.families.content.images import image_encoder
from genrec.families.content.sources import catalogue_fingerprint, encoder_folder
from genrec.families.content.tuned_towers import text_tower_folder
from genrec.families.semantic_ids import read_semantic_ids
from genrec.models import protocols
from genrec.train.restore import restore
from genrec.train.state import place

OVERLAY = "added_items"
ADVICE = "add-items {} with it (set GENREC_CACHE to where the run was trained)"  # for a stage not found


class AddItemsError(ValueError):
  """New items that cannot be added to a run, or an overlay that does not fit the run it is in."""


@dataclasses.dataclass(frozen=True)
class NewItem:
  item: str
  title: str
  text: str
  genres: tuple[str, ...]
  image: Path | None
  line: int


# ---- reading the CSV ------------------------------------------------------------------------------------------


def read_items_csv(path: str | Path, taken: dict[str, str]) -> list[NewItem]:
  """The new items of a CSV file; `taken` maps ids already in use to where (for the error)."""
  from genrec.data.preprocess import _item_fields

  path = Path(path)
  if not path.is_file():
    raise AddItemsError(f"{path}: no such file (add-items reads a CSV with item_id and title or text columns)")
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
    columns = [c for c in (rows[0].keys() if rows else [])]
  if not rows:
    raise AddItemsError(f"{path}: no items (a header row and one row per new item)")
  if "item_id" not in columns:
    raise AddItemsError(f"{path}: no 'item_id' column (columns: {columns})")
  if "title" not in columns and "text" not in columns:
    raise AddItemsError(
      f"{path}: no 'title' or 'text' column (columns: {columns}); add-items embeds each new "
      "item's text, so give a title (with optional year, genres) or the text itself"
    )
  lines = {}
  out = []
  for i, row in enumerate(rows):
    line = i + 2
    item = (row.get("item_id") or "").strip()
    if not item:
      raise AddItemsError(f"{path} line {line}: empty item_id")
    if item in lines:
      raise AddItemsError(f"item id {item!r} appears twice in {path} (lines {lines[item]} and {line})")
    if item in taken:
      raise AddItemsError(f"item id {item!r} ({path} line {line}) is already in {taken[item]}; new items need new ids")
    lines[item] = line
    title = (row.get("title") or "").strip()
    genres = tuple(g.strip() for g in (row.get("genres") or "").split("|") if g.strip())
    text = (row.get("text") or "").strip()
    if not text:
      genre_lists = np.empty(1, dtype=object)
      genre_lists[0] = list(genres)
      fields = {
        "item_id": np.array([item]),
        "title": np.array([title]),
        "year": np.array([row.get("year") or ""]),
        "genres": genre_lists,
      }
      text = _item_fields(fields, np.zeros(1, np.int64), 1)[1][1]
    if not text:
      raise AddItemsError(f"{path} line {line}: item {item!r} has no title or text to embed")
    image = (row.get("image") or "").strip()
    image_path = None
    if image:
      image_path = Path(image) if Path(image).is_absolute() else path.parent / image
      if not image_path.is_file():
        raise AddItemsError(
          f"{path} line {line}: image {image!r} of item {item!r} does not exist (looked for {image_path})"
        )
    out.append(NewItem(item, title or text, text, genres, image_path, line))
  return out


# ---- content vectors ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _text_encoder(source: str):
  from genrec.models.text import TextEncoder

  arg = source.partition(":")[2]
  return TextEncoder.minilm() if arg in ("", "minilm") else TextEncoder.from_pretrained(arg)


def content_vectors(data_cfg, items: list[NewItem], stages=None, *, progress: bool = False) -> tuple[np.ndarray, dict]:
  """float32 [M, D] for the new items from the stage `data_cfg.item_embeddings` names, and counts. `stages`
  (genrec.train.tasks.Stages) gives the encoder run of run: sources."""
  source = data_cfg.item_embeddings
  kind = source.partition(":")[0]
  if kind == "text":
    return _text_encoder(source).encode([it.text for it in items], progress=progress), {}
  if kind == "run":
    return _fused(encoder_folder(data_cfg, stages, advice=ADVICE.format("encodes new items")), items, progress)
  raise AddItemsError(
    f"this run's item content is data.item_embeddings={source!r}, a fixed table: nothing can "
    "encode new items into it; add-items needs a content encoder (text:minilm, text:HF_DIR, "
    "run:mmenc:PRESET)"
  )


def _fused(folder: Path, items: list[NewItem], progress: bool) -> tuple[np.ndarray, dict]:
  """The multimodal encoder run's fused vectors for new items (each modality from its tower: the frozen one, or
  the run's LoRA-tuned text/image tower from its checkpoint when model.towers=lora)."""
  from genrec.models.mmenc import ID

  enc = restore(folder)
  cfg, m = enc.config, len(items)
  batch, present, counts = {"item": np.zeros(m, np.int32)}, [], {}
  for modality in cfg.model.modalities:
    if modality == "text" and "text" in cfg.model.lora_towers:  # the run's tuned tower, inside encode
      from genrec.models.text.encoder import folder_tokens

      folder = text_tower_folder(cfg.data.item_embeddings)
      batch["text_ids"], batch["text_valid"] = folder_tokens(
        folder, [it.text for it in items], cfg.model.text_max_length
      )
      present.append(np.ones(m, bool))
    elif modality == "text":
      if not cfg.data.item_embeddings.startswith("text"):
        raise AddItemsError(
          f"the encoder run {folder} reads text features from {cfg.data.item_embeddings!r}, "
          "a fixed table: it cannot encode new items' text"
        )
      batch["text"] = _text_encoder(cfg.data.item_embeddings).encode([it.text for it in items], progress=progress)
      present.append(np.ones(m, bool))
    elif modality == "genre":
      names = load_dataset(cfg.data).genre_names
      unknown = sorted({g for it in items for g in it.genres} - set(names))
      if unknown:
        raise AddItemsError(
          f"genres {unknown} are not among the catalogue's genres {names}; the encoder run's "
          "genre tower only knows those"
        )
      hot = np.zeros((m, len(names)), np.float32)
      for row, it in enumerate(items):
        hot[row, [names.index(g) for g in it.genres]] = 1.0
      batch["genre"] = hot
      present.append(hot.sum(1) > 0)
    elif modality == "image":
      # A tuned tower runs inside encode on the pixels; a frozen one gives its vectors here.
      tower, tuned = image_encoder(cfg.model.image_encoder), "image" in cfg.model.lora_towers
      size = tower.preprocessing.image_size
      key, read = ("image_pixels", tower.pixels) if tuned else ("image", tower.encode)
      rows = np.zeros((m, size, size, 3), np.uint8) if tuned else np.zeros((m, tower.dim), np.float32)
      with_image = [i for i, it in enumerate(items) if it.image is not None]
      ok = np.zeros(m, bool)
      if with_image:
        rows[with_image], ok[with_image] = read([str(items[i].image) for i in with_image], progress=progress)
      counts["images_skipped"] = len(with_image) - int(ok.sum())
      batch[key] = rows
      present.append(ok)
    else:
      assert modality == ID
      present.append(np.zeros(m, bool))  # a new item has no trained ID embedding
  batch["present"] = np.stack(present, axis=1)
  empty = [items[i].item for i in np.flatnonzero(~batch["present"].any(1))]
  if empty:
    raise AddItemsError(f"items {empty} have none of the encoder's modalities {cfg.model.modalities}")
  out = jax.jit(lambda model, b: model.encode(b).astype(jnp.float32))(enc.model, batch)
  return np.asarray(out), counts


# ---- semantic IDs ----------------------------------------------------------------------------------------------


def assign_codes(run, content_MxD: np.ndarray, stages) -> np.ndarray:
  """TIGER: code tuples [M, C] for new items from the run's tokenizer stage, with fresh collision digits."""
  model_cfg, K = run.config.model, run.config.model.codebook_size
  folder = stages.folder("tokenizer", advice=ADVICE.format("assigns semantic IDs"))
  _, meta = read_semantic_ids(folder)
  if meta["version"] != model_cfg.semantic_ids_version:
    raise AddItemsError(
      f"the tokenizer stage in {folder} now gives semantic-ID table {meta['version']}, but "
      f"{run.workdir} was trained on table {model_cfg.semantic_ids_version}; its codes would "
      "not mean what the model learned"
    )
  tokenizer = restore(folder)
  prefix = np.asarray(jax.jit(lambda m, x: m.encode({"embedding": x}))(tokenizer.model, content_MxD))
  existing = np.asarray(run.model.item_codes[...])[1:]
  if prefix.shape[1] != existing.shape[1] - 1:
    raise AddItemsError(
      f"the tokenizer gives {prefix.shape[1]} digits; the model's codes have "
      f"{existing.shape[1]} (the collision digit included)"
    )
  if (prefix >= K).any():
    raise AddItemsError(
      f"a new item's code {int(prefix.max())} is outside the {K} codes per level this TIGER model was trained with"
    )
  used: dict[tuple, set] = {}
  for row in existing.tolist():
    used.setdefault(tuple(row[:-1]), set()).add(row[-1])
  codes = []
  for p in prefix.tolist():
    taken = used.setdefault(tuple(p), set())
    free = next((d for d in range(K) if d not in taken), None)
    if free is None:
      raise AddItemsError(
        f"the semantic-ID prefix {tuple(p)} already holds {K} items, every collision digit "
        f"this model can emit (codebook_size={K})"
      )
    taken.add(free)
    codes.append(p + [free])
  return np.asarray(codes, np.int32)


# ---- the overlay ----------------------------------------------------------------------------------------------


def _kind(run) -> str:
  """ "codes" (a retriever over a tokenizer stage's semantic IDs) or "content" (over item content vectors)."""
  model = run.model
  if protocols.provides(model, protocols.SemanticIDRetriever) and run.config.model.tokenizer:
    return "codes"
  if protocols.provides(model, protocols.ContentRetriever):
    return "content"
  raise AddItemsError(
    f"{run.workdir} is a {run.config.model_name} run, an ID-only model: it scores items "
    "through embeddings learned per item id, which a new item does not have; add-items needs a "
    "model that describes items by content (tiger on semantic IDs, contentrec)"
  )


def _base(run) -> dict:
  data = load_dataset(run.config.data)
  return {
    "model": run.config.model_name,
    "num_items": data.num_items,
    "catalogue": catalogue_fingerprint(data),
    "item_embeddings": run.config.data.item_embeddings,
    "semantic_ids_version": run.config.model.semantic_ids_version if _kind(run) == "codes" else "",
  }


def read_overlay(workdir: str | Path) -> tuple[dict, np.ndarray] | None:
  """(meta, the array of added items) of a run's added-items artifact, checked; None when the run has none."""
  if not artifacts.exists(workdir, OVERLAY):
    return None
  try:
    found = artifacts.read(workdir, OVERLAY, what="added-items overlay")
    meta = found.meta
    return meta, found[meta["kind"]]
  except (ArtifactError, KeyError, TypeError) as e:
    raise AddItemsError(
      f"the added-items overlay in {artifacts.folder(workdir)} is damaged ({e}); remove "
      f"{OVERLAY}.* there and run add-items again"
    ) from None


def add_items(run, csv_path: str | Path, stages, *, progress: bool = False) -> dict:
  """Encodes the CSV's items with the content and tokenizer stages of `run` (a loaded run with its overlay:
  genrec.api.Run; `stages`: the folders genrec.pipeline.locate found for it) and writes the next overlay revision.
  Returns {"revision", "added": [{"item", "id", "title", "codes"?}], "total", "images_skipped"}."""
  kind = _kind(run)
  data = load_dataset(run.config.data)
  taken = {raw: f"the catalogue of {run.workdir} ({data.name})" for raw in data.item_raw[1:]}
  taken.update({a["item"]: f"{run.workdir}'s added items (an earlier add-items)" for a in run.added})
  items = read_items_csv(csv_path, taken)
  content, counts = content_vectors(run.config.data, items, stages, progress=progress)
  new = assign_codes(run, content, stages) if kind == "codes" else np.asarray(content, np.float32)
  meta = write_overlay(run, new, [{"item": it.item, "title": it.title, "text": it.text} for it in items])
  first = data.num_items + len(run.added) + 1
  added = [
    {"item": it.item, "id": first + i, "title": it.title, **({"codes": new[i].tolist()} if kind == "codes" else {})}
    for i, it in enumerate(items)
  ]
  if progress:
    print(f"added {len(items)} items to {run.workdir} (overlay revision {meta['revision']})", file=sys.stderr)
  return {
    "revision": meta["revision"],
    "added": added,
    "total": len(meta["items"]),
    "images_skipped": counts.get("images_skipped", 0),
  }


def write_overlay(run, new: np.ndarray, entries: list[dict]) -> dict:
  """Appends items (`new`: their codes [M, C] or content vectors [M, D]; `entries`: {"item", "title", "text"})
  to the run's overlay as its next revision; returns the new meta."""
  kind = _kind(run)
  previous = read_overlay(run.workdir)
  array = np.ascontiguousarray(np.concatenate([previous[1], new]) if previous else new)
  meta = {
    "revision": previous[0]["revision"] + 1 if previous else 1,
    "kind": kind,
    "base": _base(run),
    "items": (previous[0]["items"] if previous else []) + list(entries),
  }
  artifacts.write(run.workdir, OVERLAY, {kind: array}, meta)
  return meta


def apply_overlay(run) -> None:
  """Grows a loaded run by its overlay (if any): config, placement and `run.added` are replaced in place."""
  found = read_overlay(run.workdir)
  if found is None:
    return
  meta, array = found
  kind = _kind(run)
  base = _base(run)
  if meta.get("kind") != kind or meta.get("base") != base:
    raise AddItemsError(
      f"the added-items overlay in {artifacts.folder(run.workdir)} was made for {meta.get('base')}, "
      f"not for this run ({base}); remove {OVERLAY}.* there and add the items again"
    )
  cfg = run.config
  grown = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_items=cfg.model.num_items + len(array)))
  placed = place(grown, run.placed.mesh, init=False)
  same = jax.tree.map(lambda a, b: a.shape == b.shape and a.dtype == b.dtype, placed.params, run.placed.params)
  if not all(jax.tree.leaves(same)):
    raise AddItemsError(f"{cfg.model_name}'s parameters depend on the catalogue size; it cannot take added items")
  old = run.model
  placed.params = run.placed.params
  placed.other = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), placed.other)
  model = placed.model()
  trained = np.concatenate([np.asarray(old.trained[...]), np.zeros(len(array), bool)])
  if kind == "codes":
    model.set_item_codes(np.concatenate([np.asarray(old.item_codes[...]), array]), trained)
  else:
    model.set_item_content(np.concatenate([np.asarray(old.content[...]), array]), trained)
  _, placed.params, _, placed.other = placed.split(model)
  run.config, run.placed, run.added = grown, placed, list(meta["items"])
