"""mmenc: multimodal item encoders trained on item–item co-occurrence, their embeddings as a semantic-ID source,
and their export. One mmenc:tiny stage per module, shared by the tests (trained as `run:mmenc:tiny` would)."""

import dataclasses
import json
import types

import jax
import numpy as np
import pytest
from flax import nnx

import genrec.configs
from genrec import config as config_lib
from genrec import pipeline
from genrec.config import ConfigError, DataConfig, MeshConfig
from genrec.data import load_dataset
from genrec.data.errors import DataError
from genrec.data.synthetic_mm import item_classes
from genrec.families import semantic_ids
from genrec.families.content import contrastive, sources
from genrec.train import sharding
from genrec.train.state import place
from genrec.train.tasks import Stages

NUM_ITEMS = 64


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  with pytest.MonkeyPatch.context() as mp:
    root = tmp_path_factory.mktemp("cache")
    mp.setenv("GENREC_CACHE", str(root))
    yield root


@pytest.fixture(scope="module")
def tiny(cache):
  """mmenc:tiny trained in the stage folder `run:mmenc:tiny` resolves to, with its metrics before training."""
  cfg = genrec.configs.get("mmenc:tiny")
  trainer = pipeline.trainer(cfg, pipeline.stage_dir(cfg), resume=False)
  state = trainer.state
  before = {split: trainer.evaluate(split)[0] for split in ("valid", "test")}
  init_emb = trainer.task.encode_items(trainer.placed, state["params"], state["other"])
  return {
    "dir": pipeline.stage_dir(cfg),
    "before": before,
    "init_emb": init_emb,
    "results": trainer.run(),
    "task": trainer.task,
  }


def neighbour_purity(emb_NxD, classes_N, k):
  """Mean share of each item's k nearest neighbours (cosine) in its own class; items 1..N."""
  e = emb_NxD[1:] / np.linalg.norm(emb_NxD[1:], axis=1, keepdims=True)
  sims = e @ e.T
  np.fill_diagonal(sims, -np.inf)
  nearest = np.argsort(-sims, axis=1)[:, :k]
  return float((classes_N[1:][nearest] == classes_N[1:, None]).mean())


def test_training_retrieves_cooccurring_items_far_better(tiny):
  before, after = tiny["before"], tiny["results"]
  for split in ("valid", "test"):
    print(
      f"{split}: recall@10 {before[split]['recall@10']:.3f} -> {after[split]['recall@10']:.3f}, "
      f"mrr@10 {before[split]['mrr@10']:.3f} -> {after[split]['mrr@10']:.3f} ({int(after[split]['pairs'])} pairs)"
    )
    assert after[split]["mrr@10"] > before[split]["mrr@10"] + 0.2
    assert after[split]["recall@10"] > 0.88  # ceiling ~0.92: the planted successor follows with p=0.9
  table, meta = sources.read_item_embeddings(tiny["dir"])
  assert table.shape == (NUM_ITEMS + 1, 32) and (table[0] == 0).all()
  np.testing.assert_allclose(np.linalg.norm(table[1:], axis=1), 1.0, rtol=1e-5)
  assert meta["items"] == NUM_ITEMS and meta["modalities"] == ["image", "genre", "id"]
  assert tiny["results"]["item_embeddings"]["version"] == meta["version"]


def test_image_only_recovers_the_planted_classes(tiny, tmp_path):
  cfg = config_lib.override(
    genrec.configs.get("mmenc:tiny"),
    [
      "model.modalities=[image]",
      "model.input_dims=[64]",
      "trainer.steps=60",
      "trainer.eval_every=60",
      "trainer.progress=false",
    ],
  )
  trainer = pipeline.trainer(cfg, tmp_path, resume=False)
  untrained = trainer.task.encode_items(trainer.placed, trainer.state["params"], trainer.state["other"])
  trainer.run()
  trained, _ = sources.read_item_embeddings(tmp_path)
  classes = item_classes(cfg.data)
  tower = trainer.task.features.features["image"]
  scores = {
    (name, k): neighbour_purity(e, classes, k)
    for k in (1, 7)
    for name, e in (("tower", tower), ("untrained", untrained), ("trained", trained))
  }
  print("same-class share of the k nearest neighbours:", {f"{n}@{k}": round(v, 3) for (n, k), v in scores.items()})
  # The random tower already separates the 8 classes at the nearest neighbour; training on co-occurrence (mostly
  # same-class pairs) keeps that and pulls each whole class (7 other items) closer than the tower had it.
  assert scores["trained", 1] >= 0.95
  assert scores["trained", 7] > scores["tower", 7] and scores["trained", 7] > scores["untrained", 7] + 0.08


def test_one_device_equals_eight(tiny):
  task = tiny["task"]
  batch = task.train_dataset(process_index=0, process_count=1)[3]
  out = []
  for n in (1, 8):
    mesh = sharding.make_mesh(MeshConfig(data=n), jax.devices()[:n])
    placed = place(task.cfg, mesh)
    bsh = sharding.batch_sharding(mesh)
    on_mesh = {k: jax.device_put(v, bsh) for k, v in batch.items()}

    def loss_and_grads(params, other, rngs, b, graphdef=placed.graphdef):
      return jax.value_and_grad(lambda p: nnx.merge(graphdef, p, rngs, other).loss(b)[0])(params)

    loss, grads = jax.jit(loss_and_grads)(placed.params, placed.other, placed.rngs, on_mesh)
    out.append((float(loss), jax.tree.map(np.asarray, grads)))
  print(f"loss on 1 device {out[0][0]:.6f}, on 8 devices {out[1][0]:.6f}")
  np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), out[0][1], out[1][1])


def test_loss_is_symmetric_infonce_without_duplicate_negatives(tiny):
  """Against NumPy from the model's docstring: a row's negatives are the other rows' positives (anchors, for
  the reverse direction), minus any holding the same item as the row's anchor or positive."""
  from genrec.models.mmenc import MMEnc

  task = tiny["task"]
  model = MMEnc(task.cfg.model, rngs=nnx.Rngs(3))
  items = np.array([[1, 2], [3, 2], [2, 4], [5, 6], [6, 7]])  # 2 and 6 stand in several rows
  loss = float(nnx.jit(lambda m, b: m.loss(b)[0])(model, task.features.rows(items)))
  z = np.asarray(nnx.jit(lambda m, b: m.encode(b))(model, task.features.rows(items.reshape(-1))), np.float64)
  z = z.reshape(len(items), 2, -1)
  logits = z[:, 0] @ z[:, 1].T / task.cfg.model.temperature

  def ce(scores, own, other):  # rows: queries; columns: candidates (column i is row i's positive)
    total = 0.0
    for i in range(len(items)):
      keep = [j for j in range(len(items)) if j == i or other[j] not in (own[i], other[i])]
      total += np.log(np.exp(scores[i, keep]).sum()) - scores[i, i]
    return total / len(items)

  reference = 0.5 * (ce(logits, items[:, 0], items[:, 1]) + ce(logits.T, items[:, 1], items[:, 0]))
  print(f"loss {loss:.6f}, NumPy reference {reference:.6f}")
  np.testing.assert_allclose(loss, reference, rtol=1e-5)


def test_pairs_and_held_out_ranks_follow_the_protocol():
  data = types.SimpleNamespace(num_users=1, sequences=[np.array([1, 2, 1, 3, 4, 5], np.int32)])
  data.train_sequence = lambda u: data.sequences[u][:-2]
  assert sorted(map(tuple, contrastive.cooccurrence_pairs(data, 2).tolist())) == [(1, 2), (1, 3), (2, 1), (2, 3)]
  assert [x.tolist() for x in contrastive.held_out_pairs(data, "valid")] == [[3], [4]]
  assert [x.tolist() for x in contrastive.held_out_pairs(data, "test")] == [[4], [5]]
  emb = np.array([[0, 0], [1, 0], [0.9, 0.1], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
  # query 1: item 2 and 3 tie (pessimistic: the other one ranks ahead); the query itself is no candidate
  np.testing.assert_array_equal(contrastive.pair_ranks(emb, np.array([1, 1, 1]), np.array([2, 4, 5])), [1, 2, 3])
  # in chunks of one or two queries (the scores of at most 12 / 6 items at once): the same ranks
  for chunk in (6, 12):
    np.testing.assert_array_equal(
      contrastive.pair_ranks(emb, np.array([1, 1, 1]), np.array([2, 4, 5]), chunk_scores=chunk), [1, 2, 3]
    )


def test_bad_inputs_are_clear_errors(tiny, tmp_path):
  cfg = genrec.configs.get("mmenc:tiny")
  with pytest.raises(
    ValueError,
    match=r"modality 'image': the tower outputs of synthetic_mm have width 64, but "
    r"model.input_dims gives 48",
  ):
    pipeline.trainer(config_lib.override(cfg, ["model.input_dims=[48,4]"]), tmp_path / "a")
  saved = tmp_path / "text.npy"
  np.save(saved, np.ones((NUM_ITEMS, 10), np.float32))
  text_cfg = config_lib.override(
    cfg, ["model.modalities=[text,genre]", "model.input_dims=[384,4]", f"data.item_embeddings=npy:{saved}"]
  )
  with pytest.raises(ValueError, match=r"modality 'text': .* width 10, but model.input_dims gives 384"):
    pipeline.trainer(text_cfg, tmp_path / "b")
  data = load_dataset(cfg.data)
  genres = data.item_genres.copy()
  genres[[5, 9]] = 0
  no_genre = dataclasses.replace(data, item_genres=genres)
  with pytest.raises(
    DataError,
    match=r"2 item\(s\) of synthetic_mm have none of the modalities \('genre',\) "
    r"\(items 'i5', 'i9'\).*add 'id'",
  ):
    contrastive.item_features(no_genre, config_lib.override(cfg, ["model.modalities=[genre]"]))
  with pytest.raises(DataError, match="dataset 'synthetic' has no item images"):
    pipeline.trainer(config_lib.override(cfg, ["data.dataset=synthetic"]), tmp_path / "c")
  with pytest.raises(ConfigError, match="text modality of mmenc needs a text tower's output"):
    pipeline.trainer(
      config_lib.override(
        cfg, ["model.modalities=[text]", "model.input_dims=[16]", "data.item_embeddings=run:mmenc:tiny"]
      ),
      tmp_path / "d",
    )


def test_run_source_checks_the_catalogue(tiny):
  small = load_dataset(DataConfig(dataset="synthetic", synthetic_items=32))
  encoder = Stages({"item_embeddings": tiny["dir"]})
  with pytest.raises(
    DataError,
    match=r"cover the 64 items of synthetic_mm, which is not this run's catalogue "
    r"\(32 items of synthetic\)",
  ):
    sources.item_embeddings(
      small, DataConfig(dataset="synthetic", synthetic_items=32, item_embeddings=f"run:{tiny['dir']}"), encoder
    )
  tokenizer = config_lib.override(genrec.configs.get("rqvae:tiny"), ["data.item_embeddings=run:rqkmeans:tiny"])
  with pytest.raises(
    ConfigError,
    match=r"data.item_embeddings=rqkmeans:tiny: rqkmeans \(task 'item_embeddings'\) "
    r"leaves \['semantic_ids'\], not the 'item_embeddings'",
  ):
    pipeline.stage_refs(tokenizer)


def test_tiger_trains_on_semantic_ids_of_the_fused_embeddings(tiny, cache, tmp_path):
  stamp = (tiny["dir"] / "results.json").stat().st_mtime_ns
  cfg = config_lib.override(
    genrec.configs.get("tiger:tiny"),
    [
      "data.item_embeddings=run:mmenc:tiny",
      "model.tokenizer_overrides=[model.codebook_size=4]",
      "trainer.steps=10",
      "trainer.eval_every=10",
      "trainer.progress=false",
      "model.beam_size=5",
      "eval.ks=[5]",
      "eval.batch_size=256",
      "trainer.best_metric=ndcg@5",
    ],
  )
  results = pipeline.trainer(cfg, tmp_path, resume=False).run()
  assert (tiny["dir"] / "results.json").stat().st_mtime_ns == stamp  # the encoder stage was reused
  (tokenizer,) = (cache / "stages").glob("rqkmeans-*")
  used = json.loads((tokenizer / "config.json").read_text())
  assert used["model"]["input_dim"] == 32 and used["model"]["codebook_size"] == 4
  assert used["data"]["item_embeddings"] == "run:mmenc:tiny"
  table, _ = semantic_ids.read_semantic_ids(tokenizer)
  assert table.shape == (NUM_ITEMS + 1, 3) and results["test"]["recall@5"] >= 0.0


def test_export_embeddings_cli_re_encodes_the_run(tiny, cache, tmp_path):
  from genrec import cli

  out = tmp_path / "emb" / "items.npy"
  assert cli.main(["export-embeddings", str(tiny["dir"]), "--out", str(out)]) == 0
  exported = np.load(out, allow_pickle=False)
  saved, _ = sources.read_item_embeddings(tiny["dir"])
  np.testing.assert_allclose(exported, saved, atol=1e-6)
  meta = json.loads(out.with_suffix(".json").read_text())
  assert meta["model"] == "mmenc" and meta["items"] == NUM_ITEMS and meta["dim"] == 32
  assert meta["item_ids"] == load_dataset(DataConfig(dataset="synthetic_mm")).item_raw[1:]
  assert cli.main(["export-embeddings", str(tiny["dir"]), "--out", str(tmp_path / "x.txt")]) == 2
  (tokenizer,) = (cache / "stages").glob("rqkmeans-*")  # written by the TIGER test above
  assert cli.main(["export-embeddings", str(tokenizer)]) == 2


def test_id_dropout_clears_the_id_presence_only_in_training_and_never_the_last_modality():
  from genrec.models.mmenc import MMEnc, MMEncConfig

  cfg = MMEncConfig(
    modalities=("genre", "id"), input_dims=(4,), num_items=10, id_dim=8, dim=16, hidden_dim=16, id_dropout=0.5
  )
  model = MMEnc(cfg, rngs=nnx.Rngs(params=0, dropout=1))
  present = np.ones((4000, 2), bool)
  present[:1000, 0] = False  # these rows have only their ID: it always stays
  out = np.asarray(model._drop_id(present))
  assert out[:, 0].tolist() == present[:, 0].tolist() and out[:1000, 1].all()
  assert 0.45 < 1 - out[1000:, 1].mean() < 0.55  # about half of the others lose the ID
  model.eval()
  np.testing.assert_array_equal(model._drop_id(present), present)
  for bad in (dict(id_dropout=1.0), dict(id_dropout=0.2, modalities=("genre",), input_dims=(4,))):
    with pytest.raises(ValueError, match="id_dropout"):
      dataclasses.replace(cfg, **bad).validate()
