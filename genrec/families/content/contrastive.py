"""The item–item contrastive task ("item_contrastive"): multimodal item encoders (mmenc) trained with InfoNCE
on items that co-occur in users' training sequences; the finished run leaves the artifact "item_embeddings".

Features. Each input modality is a frozen tower's output per item, computed once per process:
  text   `sources.item_embeddings` for `data.item_embeddings` (text:minilm, text:HF_DIR, npy:, random:); an item
         with empty text has no text modality.
  genre  the dataset's multi-hot `item_genres`; an item with no genre has none.
  image  `ImageEncoder` outputs for datasets with images (synthetic_mm); an image that does not load is absent.
  id     (the model's own table) present for items seen in some training sequence.
An item with no modality at all is a DataError naming it.

Tuned towers (model.towers=lora): the modalities of model.tower_lora_towers arrive as the tower's inputs instead
(text: token ids; image: uint8 pixels), and `prepare` puts the towers' pretrained weights into the placed model's
frozen state, so the run's checkpoint carries them and everything that loads the run encodes with the tuned
towers (`genrec.train.tuned_towers`).

Training pairs: (s[t], s[t+d]) for 1 <= d <= model.window in every training sequence (`SeqData.train_sequence`,
so valid and test interactions never leak), the same item twice skipped; a pair appears as often as it
co-occurs. Batches of pairs are global arrays split over the data-parallel axes; the loss (in the model) uses
the whole global batch as in-batch negatives.

Validation = held-out pair retrieval. Per user, split "valid" pairs the last training item (query) with the
valid item (target), split "test" the valid item with the test item; users whose query equals the target are
skipped. Every item except the query is a candidate, scored by the dot product of fused embeddings; the
target's 0-based rank counts candidates scoring at least as high (ties pessimistic). Recall@k = rank < k,
NDCG@k, MRR@k as in `metrics.ranking_metrics`, averaged over pairs.

`finish` writes the fused embeddings [num_items + 1, D] (row 0 zeros) as the run artifact "item_embeddings"
(`sources.write_item_embeddings`); `data.item_embeddings=run:mmenc:PRESET` (or run:DIR) reads them.
"""

from __future__ import annotations

import dataclasses
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genrec.config import ConfigError, ExperimentConfig
from genrec.data.errors import DataError
from genrec.data.pipeline import ProcessRows
from genrec.families.content import sources, tuned_towers
from genrec.families.content.images import image_encoder, item_images
from genrec.families.content.sources import ITEM_EMBEDDINGS, write_item_embeddings
from genrec.models import protocols
from genrec.train import metrics, sharding
from genrec.train.tasks import Task, register_task


@dataclasses.dataclass(frozen=True)
class ItemFeatures:
  """Frozen tower outputs per item (what an mmenc config's `resolve()` sees)."""

  name: str
  num_items: int
  modalities: tuple[str, ...]  # the model's, "id" included
  features: dict[str, np.ndarray]  # input modality -> float32 [N+1, D_m]
  present: np.ndarray  # bool [N+1, M] over `modalities`; row 0 all False
  tokens: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # tuned towers' inputs [N+1, ...]
  text_tower: object = None  # lora on text: the tower's BertConfig
  text_folder: str = ""  # lora on text: its HF folder
  image_tower: object = None  # lora on image: the tower's ClipVisionConfig
  image_preprocessing: object = None  # lora on image: its ImageConfig

  @property
  def widths(self) -> dict[str, int]:
    tuned = {"text": self.text_tower.hidden} if self.text_tower is not None else {}
    if self.image_tower is not None:
      tuned["image"] = self.image_tower.dim
    return {**{m: int(f.shape[1]) for m, f in self.features.items()}, **tuned}

  def rows(self, items: np.ndarray) -> dict[str, np.ndarray]:
    """An encode batch for `items` (any shape): {"item", "present", <modality>, <tokens>}."""
    items = np.asarray(items, np.int32)
    return {
      "item": items,
      "present": self.present[items],
      **{m: f[items] for m, f in {**self.features, **self.tokens}.items()},
    }


def _modality(name: str, data, cfg: ExperimentConfig, progress: bool) -> tuple[np.ndarray | None, np.ndarray]:
  """(features [N+1, D] or None for "id", presence [N+1])."""
  if name == "text":
    source = cfg.data.item_embeddings
    if source.startswith("run:"):
      raise ConfigError(
        f"data.item_embeddings={source!r}: the text modality of {cfg.model_name} needs a text "
        "tower's output (text:minilm, text:HF_DIR, npy:FILE), not another run's fused embeddings"
      )
    table = sources.item_embeddings(data, cfg.data, progress=progress)
    present = (
      np.array([bool(t.strip()) for t in data.item_text]) if source.startswith("text") else np.abs(table).sum(1) > 0
    )
    return table, present
  if name == "genre":
    if data.item_genres is None:
      raise DataError(f"{data.name} has no item genres; drop 'genre' from model.modalities")
    genres = np.asarray(data.item_genres, np.float32)
    return genres, genres.sum(1) > 0
  if name == "image":
    images = item_images(cfg.data)[1:]
    if progress:
      print(f"encoding {len(images)} item images of {data.name} with {cfg.model.image_encoder}", file=sys.stderr)
    emb, valid = image_encoder(cfg.model.image_encoder).encode(images, progress=progress)
    return np.concatenate([np.zeros((1, emb.shape[1]), np.float32), emb]), np.concatenate([[False], valid])
  return None, data.trained_items()


def item_features(data, cfg: ExperimentConfig, *, progress: bool = False) -> ItemFeatures:
  """Every modality of `cfg.model` for items 0..N, checked: finite, and each item has at least one."""
  model = cfg.model
  key = (
    tuple(model.modalities),
    model.image_encoder,
    cfg.data.item_embeddings,
    cfg.data.empty_item_text,
    model.towers,
    model.tower_lora_towers,
    model.text_max_length,
  )
  memo = getattr(data, "_mm_features", {})
  if key in memo:
    return memo[key]
  features, present, inputs, tuned = {}, [], {}, {}
  if model.towers == "lora":
    model._validate_lora()
  for m in model.modalities:
    if m in model.lora_towers:
      arrays, mask, fields = tuned_towers.tuned_inputs(m, data, cfg, progress=progress)
      inputs.update(arrays)
      tuned.update(fields)
      present.append(mask)
      continue
    table, mask = _modality(m, data, cfg, progress)
    if table is not None:
      if table.shape[0] != data.num_items + 1:
        raise DataError(f"modality {m!r}: {table.shape[0] - 1} rows for the {data.num_items} items of {data.name}")
      if not np.isfinite(table).all():
        bad = np.flatnonzero(~np.isfinite(table).all(1))[:5]
        raise DataError(f"modality {m!r}: non-finite features for items {[data.item_raw[i] for i in bad]}")
      features[m] = np.asarray(table, np.float32)
    present.append(np.asarray(mask, bool))
  present_NxM = np.stack(present, axis=1)
  present_NxM[0] = False
  empty = np.flatnonzero(~present_NxM[1:].any(1)) + 1
  if len(empty):
    shown = ", ".join(repr(data.item_raw[i]) for i in empty[:5])
    raise DataError(
      f"{len(empty)} item(s) of {data.name} have none of the modalities {model.modalities} (items "
      f"{shown}{', ...' if len(empty) > 5 else ''}); give them content or add 'id' to "
      "model.modalities"
    )
  out = ItemFeatures(data.name, data.num_items, tuple(model.modalities), features, present_NxM, inputs, **tuned)
  memo[key] = out
  object.__setattr__(data, "_mm_features", memo)
  return out


def cooccurrence_pairs(data, window: int) -> np.ndarray:
  """int32 [P, 2]: (s[t], s[t+d]) for 1 <= d <= window in every training sequence, equal items skipped."""
  pairs = []
  for u in range(data.num_users):
    seq = data.train_sequence(u)
    for d in range(1, window + 1):
      if len(seq) > d:
        p = np.stack([seq[:-d], seq[d:]], axis=1)
        pairs.append(p[p[:, 0] != p[:, 1]])
  pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int32)
  if not len(pairs):
    raise DataError(f"{data.name}: no two distinct items co-occur within {window} in any training sequence")
  return pairs.astype(np.int32)


def held_out_pairs(data, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(query [Q], target [Q]) of `split`, see the module docstring."""
  back = {"valid": 2, "test": 1}[split]
  sequences = [s for s in data.sequences if len(s) > back]
  q = np.array([s[-back - 1] for s in sequences], np.int32)
  t = np.array([s[-back] for s in sequences], np.int32)
  keep = q != t
  return q[keep], t[keep]


def pair_ranks(
  emb_NxD: np.ndarray, query_Q: np.ndarray, target_Q: np.ndarray, *, chunk_scores: int = 2**24
) -> np.ndarray:
  """0-based rank of each target among all items but the query and padding (ties pessimistic). Queries go in
  chunks of at most `chunk_scores` scores (64 MiB of float32), not one [Q, N] matrix (GBs on Amazon)."""
  step = max(1, chunk_scores // max(len(emb_NxD), 1))
  return np.concatenate(
    [_pair_ranks(emb_NxD, query_Q[i : i + step], target_Q[i : i + step]) for i in range(0, len(query_Q), step)]
    or [np.zeros(0, np.int64)]
  )


def _pair_ranks(emb_NxD, query_Q, target_Q):
  scores_QxN = emb_NxD[query_Q] @ emb_NxD.T
  rows = np.arange(len(query_Q))
  target_score = scores_QxN[rows, target_Q]
  scores_QxN[:, 0] = -np.inf
  scores_QxN[rows, query_Q] = -np.inf
  scores_QxN[rows, target_Q] = -np.inf
  return (scores_QxN >= target_score[:, None]).sum(1)


@register_task("item_contrastive")
class ItemContrastiveTask(Task):
  requires = (protocols.Trainable, protocols.ItemEncoder)
  exports = (ITEM_EMBEDDINGS,)

  def __init__(self, cfg: ExperimentConfig, data, stages=None):
    super().__init__(cfg, data, stages)
    self.features = item_features(data, cfg, progress=cfg.trainer.progress)
    self.pairs = cooccurrence_pairs(data, cfg.model.window)
    self._encode = None

  @property
  def view(self) -> ItemFeatures:
    return self.features

  def prepare(self, placed, key) -> None:
    """towers=lora: the tuned towers' pretrained weights into the fresh model (a resumed run has them)."""
    del key
    if self.cfg.model.lora_towers:
      tuned_towers.load_towers(placed, self.features)

  def train_dataset(self, *, process_index: int, process_count: int):
    batch = self.cfg.trainer.batch_size
    if batch % process_count:
      raise ValueError(f"batch size {batch} does not divide over {process_count} processes")
    order = grain.MapDataset.range(len(self.pairs)).seed(self.cfg.data.seed).shuffle().repeat(None)
    rows = grain.MapDataset.source(ProcessRows(order, batch, process_index, process_count))
    return rows.map(lambda ex: self.features.rows(self.pairs[ex[1]])).batch(batch // process_count, drop_remainder=True)

  def encode_items(self, placed, params, other, *, progress: bool = False) -> np.ndarray:
    """float32 [N+1, D]: the fused embedding of every item (row 0 zeros), in jitted chunks of
    eval.batch_size split over the mesh."""
    graphdef, mesh, chunk = placed.eval_graphdef, placed.mesh, self.cfg.eval.batch_size
    if self._encode is None:
      fn = lambda params, other, rngs, b: nnx.merge(graphdef, params, rngs, other).encode(b).astype(jnp.float32)
      self._encode = jax.jit(fn, out_shardings=sharding.replicated(mesh))
    bsh = sharding.batch_sharding(mesh)
    n = self.data.num_items
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=n, desc="encoding items", unit="item", disable=not progress) as bar:
      for start in range(0, n, chunk):
        items = 1 + (np.arange(start, start + chunk) % n)  # the last chunk wraps around: one shape
        rows = self.features.rows(items)
        batch = {k: jax.make_array_from_callback(v.shape, bsh, lambda idx, v=v: v[idx]) for k, v in rows.items()}
        out.append(np.asarray(self._encode(params, other, placed.rngs, batch))[: min(chunk, n - start)])
        bar.update(min(chunk, n - start))
    emb = np.concatenate(out)
    return np.concatenate([np.zeros((1, emb.shape[1]), np.float32), emb])

  def evaluator(self, placed):
    ks = tuple(self.cfg.eval.ks)
    held = {split: held_out_pairs(self.data, split) for split in ("valid", "test")}

    def evaluate(params, other, split):
      rank = pair_ranks(self.encode_items(placed, params, other), *held[split])
      per_pair = metrics.ranking_metrics(jnp.asarray(rank), ks)
      return {**{k: float(np.mean(v)) for k, v in per_pair.items()}, "pairs": float(len(rank))}, {}

    return evaluate

  def finish(self, trainer, params, other) -> dict:
    emb = self.encode_items(trainer.placed, params, other, progress=self.cfg.trainer.progress)
    if jax.process_index() == 0:
      return {ITEM_EMBEDDINGS: write_item_embeddings(trainer.workdir, emb, self.cfg, self.data)}
    return {}

  def protocol(self) -> dict:
    return {
      "dataset": self.data.name,
      "split": "held-out pairs (last train item -> valid item, valid -> test)",
      "candidates": "all items but the query",
      "ks": list(self.cfg.eval.ks),
      "users": self.data.num_users,
      "items": self.data.num_items,
      "task": "item_contrastive",
      "modalities": list(self.features.modalities),
      "train_pairs": int(len(self.pairs)),
      "window": self.cfg.model.window,
      "ties": "pessimistic (an item scored equal to the target ranks ahead of it)",
    }
