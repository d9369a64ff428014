"""TALLRec / CoLLM / LLaRA-style models: prompts built on the host (templates, placeholders, truncation that
keeps the target, LLaRA's curriculum), CF embeddings really injected at the placeholders, a tiny HF checkpoint
loaded through `model.llm_path` against an independent NumPy float64 forward, bad input, and training through
the real Trainer: only adapters (+ projector) move, LoRA frozen in CoLLM's stage 2, CoLLM beats TALLRec when
the LLM knows nothing, 1 device == 8 devices."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

import genrec.configs
from genrec import config as config_lib
from genrec import pipeline
from genrec.config import ConfigError, MeshConfig
from genrec.data import load_dataset
from genrec.families.llm_cf import pointwise as pointwise_lib
from genrec.families.llm_cf.cf import CFArtifactError, save_cf_artifact
from genrec.families.llm_cf.pointwise import candidate_metrics, make_predictor
from genrec.families.llm_cf.prompted import titles
from genrec.models.llm import LLMConfig, hf_name
from genrec.models.llm.prompts import SLOT_ITEM, SLOT_USER, PromptBuilder, word_tokenizer
from genrec.models.llmrec import CoLLM, CoLLMConfig, TALLRecConfig
from genrec.models.text import CheckpointError
from genrec.train import sharding
from genrec.train.report import results_table
from genrec.train.tasks import get_task
from models.test_llm import LLAMA, np_logits, random_tensors, write_checkpoint  # the NumPy reference

TITLES = ["", "Toy Story", "Heat", "Casino", "Fargo", "Sense and Sensibility"]


pytestmark = pytest.mark.usefixtures("stage_cache")  # the mf:tiny CF stage trains once, in this module's cache


def tiny(spec, *overrides):
  return config_lib.override(genrec.configs.get(spec), ["trainer.progress=false", *overrides])


def mesh_of(n, **axes):
  return sharding.make_mesh(MeshConfig(**axes), devices=jax.devices()[:n])


def host(state) -> dict:
  return {p: np.asarray(jax.device_get(v.get_value())) for p, v in nnx.to_flat_state(state)}


def words(tok, ids, valid):
  return " ".join(tok.id_to_token(int(i)) for i in ids[valid])


# ---- prompts (host only)
def test_templates_place_placeholders_and_truncation_drops_the_oldest_history_first():
  tok = word_tokenizer(TITLES[1:])
  collm = PromptBuilder(tok, TITLES, template="collm", max_len=30)
  out = collm.build([7, 2], [4, 5], [[0, 1, 2], [1, 2, 3]])
  assert words(tok, out["prompt"][0], out["prompt_valid"][0]) == (
    "User Preference : Toy Story <ItemID> , Heat <ItemID> User feature : <UserID> . Whether the user will "
    "like the target movie Fargo <TargetItemID> ? Answer :"
  )
  slot, index = out["cf_slot"][0], out["cf_index"][0]
  assert index[slot == SLOT_ITEM].tolist() == [1, 2, 4] and index[slot == SLOT_USER].tolist() == [7]
  assert out["prompt"].shape == (2, 30) and out["prompt_valid"].sum(1).tolist() == [27, 28]
  assert out["prompt_valid"][0, :27].all() and (out["prompt"][0, 27:] == tok.token_to_id("<|endoftext|>")).all()
  # Row 1 needs 32 tokens: its oldest item (Toy Story) goes; the newest two and the whole target stay.
  row1 = words(tok, out["prompt"][1], out["prompt_valid"][1])
  assert row1.startswith("User Preference : Heat <ItemID> , Casino <ItemID> User feature")
  assert row1.endswith("movie Sense and Sensibility <TargetItemID> ? Answer :")
  assert collm.kept([4, 5], [[0, 1, 2], [1, 2, 3]]).tolist() == [2, 2]
  tallrec = PromptBuilder(tok, TITLES, template="tallrec", max_len=40).build([7], [4], [[0, 1, 2]])
  assert set(tallrec) == {"prompt", "prompt_valid"}
  assert words(tok, tallrec["prompt"][0], tallrec["prompt_valid"][0]) == (
    "User Preference : Toy Story , Heat Whether the user will like the target movie Fargo ? Answer :"
  )
  # LLaRA's text-only rows: the hybrid tokens are masked, every other token stays where it was.
  llara = PromptBuilder(tok, TITLES, template="llara", max_len=40)
  on, off = (llara.build([7], [4], [[0, 1, 2]], hybrid_B=[h]) for h in (True, False))
  np.testing.assert_array_equal(on["prompt"], off["prompt"])
  assert (on["prompt_valid"] & ~off["prompt_valid"]).sum() == 3 == (on["cf_slot"] == SLOT_ITEM).sum()
  with pytest.raises(
    ConfigError,
    match=r"max_prompt_len=20 is too short: a collm prompt with no history needs up "
    r"to 23 tokens",
  ):
    PromptBuilder(tok, TITLES, template="collm", max_len=20)


def test_tokenizer_without_the_needed_tokens():
  from tokenizers import Tokenizer, models, pre_tokenizers

  tok = Tokenizer(models.WordLevel({"<unk>": 0, "Yes": 1, "No": 2, "Heat": 3}, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  with pytest.raises(CheckpointError, match=r"tokenizer\.json lacks the special token\(s\) \['<\|endoftext\|>'\]"):
    PromptBuilder(tok, TITLES, template="tallrec", max_len=64, source="tokenizer.json")
  with pytest.raises(ConfigError, match=r"the answer 'Yes please' is 2 tokens"):
    PromptBuilder(
      word_tokenizer(["Yes please"]), TITLES, template="tallrec", max_len=64, answer_words=("Yes please", "No")
    )


# ---- the model: CF embeddings replace the placeholders
def test_placeholders_carry_the_projected_cf_embeddings():
  tok = word_tokenizer(TITLES[1:])
  builder = PromptBuilder(tok, TITLES, template="collm", max_len=40)
  cfg = CoLLMConfig(
    llm=LLMConfig(vocab_size=tok.get_vocab_size()),
    num_users=8,
    num_items=5,
    cf_dim=6,
    answer_ids=tuple(builder.answer_ids),
    max_prompt_len=40,
  )
  graphdef, state = nnx.split(CoLLM(cfg, rngs=nnx.Rngs(0)))
  flat = dict(nnx.to_flat_state(state))
  rng = np.random.default_rng(0)
  for name, rows in (("cf_users", 8), ("cf_items", 6)):
    flat[(name,)] = flat[(name,)].replace(jnp.asarray(rng.normal(size=(rows, 6)), jnp.float32))
  batch = builder.build([7, 2, 3], [4, 5, 4], [[0, 1, 2], [0, 0, 3], [0, 0, 0]])
  labels = np.array([1.0, 0.0, 1.0], np.float32)
  run = jax.jit(lambda st, b: (nnx.merge(graphdef, st).predict(b), nnx.merge(graphdef, st).loss(b)))

  def predict(path=None, rows=None, by=0.0):
    changed = dict(flat)
    if path is not None:
      changed[path] = changed[path].replace(changed[path].get_value().at[rows].add(by))
    p, (loss, metrics) = run(nnx.from_flat_state(list(changed.items())), {**batch, "label": labels})
    return np.asarray(p), float(loss), float(metrics["bce"])

  p, loss, bce = predict()
  assert p.shape == (3,) and p.dtype == np.float32 and ((p > 0) & (p < 1)).all()
  expected = -np.mean(labels * np.log(p.astype(np.float64)) + (1 - labels) * np.log(1 - p.astype(np.float64)))
  assert loss == pytest.approx(expected, rel=1e-5) and bce == loss
  # The target's CF vector moves P(yes) of the rows whose target it is (rows 0 and 2), and only those.
  moved = predict(("cf_items",), 4, 1.0)[0]
  assert np.abs(moved - p)[[0, 2]].min() > 1e-4 and moved[1] == p[1]
  moved = predict(("cf_users",), 7, 1.0)[0]
  assert np.abs(moved - p)[0] > 1e-4 and (moved[1:] == p[1:]).all()
  # The placeholders' own token embeddings never reach the model: replaced before the first layer.
  table = ("lm", "tokens", "embedding")
  ids = np.array([tok.token_to_id(t) for t in ("<UserID>", "<ItemID>", "<TargetItemID>")])
  np.testing.assert_array_equal(predict(table, ids, 5.0)[0], p)
  assert np.abs(predict(table, tok.token_to_id("Fargo"), 5.0)[0] - p).max() > 1e-4  # a text token does


def test_trainable_filters_by_model_and_stage():
  def trainable(spec, *sets):
    cfg = config_lib.override(genrec.configs.get(spec), ["model.num_users=4", "model.num_items=5", *sets])
    cls = genrec.registry.model_class(cfg.model_name)
    model = nnx.eval_shape(lambda: cls(cfg.model, rngs=nnx.Rngs(0)))
    names = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, cls.trainable(cfg.model)))}
    return {"lora" if "lora_" in n else n.split("/")[0] for n in names}

  assert trainable("tallrec:tiny") == {"lora"}
  assert trainable("collm:tiny") == {"lora", "projector"} == trainable("llara:tiny")
  assert trainable("collm:tiny", "model.stage=text") == {"lora"}
  assert trainable("collm:tiny", "model.stage=cf") == {"projector"}
  with pytest.raises(ConfigError, match="model.stage='both' is not one of"):
    tiny("collm:tiny", "model.stage=both")


# ---- the task: prompts from the dataset, bad input
@pytest.fixture(scope="module")
def fake_cf(tmp_path_factory):
  """A CF artifact sized for the synthetic set (256 users, 64 items), and one with the wrong item count."""
  rng = np.random.default_rng(1)
  good, bad = tmp_path_factory.mktemp("cf_good"), tmp_path_factory.mktemp("cf_bad")
  save_cf_artifact(good, rng.normal(size=(256, 16)), rng.normal(size=(65, 16)), model="mf", dataset="synthetic")
  save_cf_artifact(bad, rng.normal(size=(256, 16)), rng.normal(size=(51, 16)), model="mf", dataset="synthetic")
  return good, bad


def task_of(cfg):
  """The task of `cfg` as a trainer gets it: its stages (here a CF run folder, model.cf_run) located."""
  return get_task(cfg, load_dataset(cfg.data), pipeline.locate(cfg))


def test_truncated_examples_are_counted_and_keep_their_target():
  task = task_of(tiny("tallrec:tiny", "model.max_prompt_len=24"))
  names = titles(load_dataset(task.cfg.data))
  counted = task.protocol()["prompt"]["truncated_examples"]
  for split in ("train", "valid", "test"):
    arrays = task.points.split(split)
    full = [
      f"User Preference: {', '.join(names[h] for h in hist[hist > 0])} Whether the user will like the "
      f"target movie {names[t]}? Answer:"
      for hist, t in zip(arrays["history"], arrays["item"])
    ]
    assert counted[split] == sum(len(re.findall(r"\w+|[^\w\s]+", text)) > 24 for text in full)
  print(f"max_prompt_len=24: truncated examples {counted}")
  assert counted["train"] > 100
  arrays = task.split("valid")
  tok = word_tokenizer(names[1:])
  for r in range(0, 512, 37):
    text = words(tok, arrays["prompt"][r], arrays["prompt_valid"][r])
    assert text.endswith(f"movie {names[arrays['item'][r]]} ? Answer :")


def test_cf_artifact_of_other_data_is_refused(fake_cf):
  with pytest.raises(
    CFArtifactError,
    match=r"collm reads its CF embeddings from .*cf_bad.*: .* covers 256 users "
    r"and 50 items; synthetic has 256 users and 64 items",
  ):
    task_of(tiny("collm:tiny", f"model.cf_run={fake_cf[1]}")).configure()  # read when training starts


def test_llara_curriculum_is_deterministic_and_splits_over_processes(fake_cf):
  cfg = tiny("llara:tiny", f"model.cf_run={fake_cf[0]}", "model.curriculum_steps=10")
  task = task_of(cfg)

  def hybrid_rows(batch):
    items = batch["cf_slot"] == SLOT_ITEM
    return (items & batch["prompt_valid"]).sum(1) == items.sum(1)

  whole = task.train_dataset(process_index=0, process_count=1)
  assert not hybrid_rows(whole[0]).any() and hybrid_rows(whole[10]).all() and hybrid_rows(whole[37]).all()
  half = hybrid_rows(whole[5]).mean()
  assert 0.3 < half < 0.7
  again = task_of(cfg).train_dataset(process_index=0, process_count=1)[5]
  parts = [task.train_dataset(process_index=i, process_count=2)[5] for i in range(2)]
  for key, value in whole[5].items():
    np.testing.assert_array_equal(again[key], value)
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), value)
  # Evaluation always uses the hybrid prompts.
  assert hybrid_rows(task.split("valid")).all()


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
  """A tiny random Llama checkpoint in HF layout, with a word-level tokenizer.json over the synthetic titles."""
  tensors = random_tensors(LLAMA, seed=3)
  folder = write_checkpoint(tmp_path_factory.mktemp("llama"), tensors, LLAMA)
  word_tokenizer(titles(load_dataset(tiny("tallrec:tiny").data))[1:]).save(str(folder / "tokenizer.json"))
  return folder, tensors


def test_bad_checkpoint_folders(hf_folder, tmp_path):
  folder, tensors = hf_folder
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
  with pytest.raises(CheckpointError, match=r"no config\.json in .*empty"):
    task_of(tiny("tallrec:tiny", f"model.llm_path={empty}"))
  (empty / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 256}')
  with pytest.raises(
    CheckpointError,
    match=r"model_type 'gpt2' is not supported; supported model types: "
    r"\('llama', 'qwen2'\)",
  ):
    task_of(tiny("tallrec:tiny", f"model.llm_path={empty}"))
  no_pad = tmp_path / "no_pad"
  write_checkpoint(no_pad, {}, LLAMA)
  word_tokenizer([]).save(str(no_pad / "tokenizer.json"))
  text = (no_pad / "tokenizer.json").read_text().replace("<|endoftext|>", "<|pad|>")
  (no_pad / "tokenizer.json").write_text(text)
  with pytest.raises(CheckpointError, match=r"tokenizer\.json lacks the special token\(s\) \['<\|endoftext\|>'\]"):
    task_of(tiny("tallrec:tiny", f"model.llm_path={no_pad}"))
  with pytest.raises(ConfigError, match=r"max_prompt_len=200 exceeds the LLM's context of 128 positions"):
    pipeline.trainer(
      tiny("tallrec:tiny", f"model.llm_path={folder}", "model.max_prompt_len=200"),
      tmp_path / "long",
      mesh=mesh_of(1),
      resume=False,
    )
  wrong = tmp_path / "wrong"
  write_checkpoint(wrong, random_tensors(dict(LLAMA, intermediate_size=96)), LLAMA)
  (wrong / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
  with pytest.raises(
    CheckpointError,
    match=r"tensor model\.layers\.0\.mlp\.(down|gate|up)_proj\.weight has shape "
    r"\((96, 64|64, 96)\) but the config implies \((128, 64|64, 128)\)",
  ):
    pipeline.trainer(tiny("tallrec:tiny", f"model.llm_path={wrong}"), tmp_path / "w", mesh=mesh_of(1), resume=False)


def test_bad_prompt_settings_and_a_tokenizer_larger_than_the_llm(hf_folder, tmp_path):
  with pytest.raises(
    ConfigError,
    match=r"model\.answer_words \('Yes', 'No', 'Maybe'\) / answer_ids \(-1, -1\): need "
    r"exactly two",
  ):
    TALLRecConfig(answer_words=("Yes", "No", "Maybe"))
  with pytest.raises(ConfigError, match=r"model\.max_title_tokens=0: titles need at least one token"):
    PromptBuilder(word_tokenizer(TITLES[1:]), TITLES, template="tallrec", max_len=40, max_title_tokens=0)
  big = tmp_path / "big"
  big.mkdir()
  (big / "config.json").write_bytes((hf_folder[0] / "config.json").read_bytes())
  names = titles(load_dataset(tiny("tallrec:tiny").data))[1:]
  word_tokenizer(names + [f"w{i}" for i in range(256)]).save(str(big / "tokenizer.json"))
  with pytest.raises(
    ConfigError,
    match=r"big/tokenizer\.json has \d+ tokens but the LLM in .*big embeds 256: they "
    r"are not from the same model",
  ):
    task_of(tiny("tallrec:tiny", f"model.llm_path={big}"))


def np_gelu(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def test_hf_checkpoint_streams_onto_the_mesh_and_matches_a_numpy_reference(hf_folder, fake_cf, tmp_path):
  folder, tensors = hf_folder
  cfg = tiny("collm:tiny", f"model.llm_path={folder}", f"model.cf_run={fake_cf[0]}")
  trainer = pipeline.trainer(cfg, tmp_path, mesh=mesh_of(8, data=2, fsdp=2, tensor=2), resume=False)
  llm = trainer.cfg.model.llm
  assert (llm.family, llm.hidden, llm.rope.scaling, llm.max_position) == ("llama", 64, "llama3", 128)
  placed = trainer.placed
  other, shardings = dict(nnx.to_flat_state(placed.other)), dict(nnx.to_flat_state(placed.other_shardings))
  for path, var in other.items():
    if path[0] != "lm":
      continue
    expected = tensors[hf_name(path[1:])]
    np.testing.assert_array_equal(np.asarray(var.get_value()), expected.T if path[-1] == "kernel" else expected)
    assert var.get_value().sharding.is_equivalent_to(shardings[path].get_value(), expected.ndim)
  assert other[("lm", "layers", 0, "mlp", "up", "kernel")].get_value().sharding.spec == P("fsdp", "tensor")
  # P(yes) for a few validation prompts against NumPy float64 from the HF tensors: the placeholders' rows
  # of the embedding table become projector(CF vector), computed here from the placed parameters.
  arrays = {k: v[:8] for k, v in trainer.task.split("valid").items()}
  probs = make_predictor(placed, 8)(placed.params, placed.other, arrays)
  params = host(placed.params)
  proj = lambda x: (
    np_gelu(x @ params[("projector", "layers", 0, "kernel")] + params[("projector", "layers", 0, "bias")])
    @ params[("projector", "layers", 2, "kernel")]
    + params[("projector", "layers", 2, "bias")]
  )
  users, items = (np.asarray(jax.device_get(other[(n,)].get_value()), np.float64) for n in ("cf_users", "cf_items"))
  yes, no = trainer.cfg.model.answer_ids
  margins = []
  for r in range(8):
    valid = arrays["prompt_valid"][r]
    ids, slot, index = (arrays[k][r][valid] for k in ("prompt", "cf_slot", "cf_index"))
    cf = np.stack([(users if k == SLOT_USER else items)[i] for k, i in zip(slot, index) if k > 0])
    table = dict(tensors)
    table["model.embed_tokens.weight"] = np.concatenate([tensors["model.embed_tokens.weight"], proj(cf)])
    ids = ids.copy()
    ids[slot > 0] = LLAMA["vocab_size"] + np.arange((slot > 0).sum())
    logits = np_logits(table, LLAMA, ids)[-1]
    margins.append(logits[yes] - logits[no])
  expected = 1 / (1 + np.exp(-np.asarray(margins)))
  print(
    f"P(yes) vs NumPy float64 on an HF checkpoint: max abs diff {np.abs(expected - probs).max():.2e} "
    f"(reference margins l_yes - l_no: {np.round(margins, 3).tolist()})"
  )
  np.testing.assert_allclose(probs, expected, atol=1e-6)


# ---- training through the real Trainer
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """collm:tiny (CF from the mf:tiny stage it trains first; also ranked: HR@1 over 20 candidates) and
  tallrec:tiny, 100 steps each on one device,
  evaluated once at the end (so the kept model is the last state); every variable's value before and after."""
  out = {}
  for spec, sets in (
    ("collm:tiny", ["model.cf_stage_overrides=mesh.data=1", "eval.candidates=sampled:19"]),
    ("tallrec:tiny", []),
  ):
    workdir = tmp_path_factory.mktemp(spec.split(":")[0])
    trainer = pipeline.trainer(tiny(spec, "trainer.eval_every=100", *sets), workdir, mesh=mesh_of(1), resume=False)
    before = {**host(trainer.placed.params), **host(trainer.placed.other)}
    results = trainer.run()
    after = {**host(trainer.state["params"]), **host(trainer.state["other"])}
    out[spec.split(":")[0]] = workdir, results, before, after
  return out


def changed(before, after):
  return {"/".join(map(str, p)) for p in before if not np.array_equal(before[p], after[p])}


def test_collm_beats_tallrec_when_the_llm_knows_nothing(trained):
  collm, tallrec = trained["collm"][1], trained["tallrec"][1]
  print(
    f"planted clusters, random tiny LLM, 100 steps: CoLLM-MF valid/test AUC {collm['valid']['auc']:.3f}/"
    f"{collm['test']['auc']:.3f}, TALLRec {tallrec['valid']['auc']:.3f}/{tallrec['test']['auc']:.3f}"
  )
  # Titles are "item <id>": text alone says nothing about the planted clusters; the MF vectors do.
  assert collm["test"]["auc"] > 0.65 and collm["valid"]["auc"] > 0.65
  assert tallrec["test"]["auc"] < 0.6 and collm["test"]["auc"] > tallrec["test"]["auc"] + 0.1
  assert collm["protocol"]["prompt"]["cf"]["model"] == "mf"
  assert collm["protocol"]["prompt"]["truncated_examples"] == {"train": 0, "valid": 0, "test": 0}


def test_only_adapters_and_the_projector_move_base_weights_stay_bit_identical(trained):
  _, _, before, after = trained["tallrec"]
  moved = changed(before, after)
  assert moved and all("lora_" in name for name in moved)
  assert len(moved) == 2 * 7 * 2  # A and B of 7 layers in each of 2 blocks
  _, _, before, after = trained["collm"]
  moved = changed(before, after)
  assert {n.split("/")[0] for n in moved if "lora_" not in n} == {"projector"}
  assert sum(n.startswith("projector") for n in moved) == 4
  # The CF tables hold the stage's MF embeddings, untouched.
  np.testing.assert_array_equal(after[("cf_items",)], before[("cf_items",)])
  assert np.abs(after[("cf_items",)][1:]).sum() > 0


def test_stage_two_freezes_lora_and_one_device_equals_eight(tmp_path, trained):
  """CoLLM's stage 2 (`model.stage=cf`, warm-started from a run with --init-from): three steps on 1 and on 8
  devices give the same losses; only the projector moves."""
  source, _, _, start = trained["collm"]
  cfg = tiny("collm:tiny", "model.stage=cf", "trainer.batch_size=16", "model.cf_stage_overrides=mesh.data=1")
  losses = []
  for mesh in (mesh_of(1), mesh_of(8, data=2, fsdp=2, tensor=2)):
    trainer = pipeline.trainer(cfg, tmp_path / "unused", mesh=mesh, resume=False, init_from=source)
    assert not any("lora_" in "/".join(map(str, p)) for p in host(trainer.placed.params))  # not optimized
    batch = {
      k: jax.make_array_from_process_local_data(trainer.batch_sharding, v) for k, v in trainer.train_data[0].items()
    }
    out = []
    for _ in range(3):
      trainer.state, metrics = trainer._step(trainer.state, trainer.placed.rngs, batch)
      out.append(float(metrics["loss"]))
    losses.append(out)
    after = {**host(trainer.state["params"]), **host(trainer.state["other"])}
    assert changed(start, after) == {f"projector/layers/{i}/{n}" for i in (0, 2) for n in ("bias", "kernel")}
  print(f"stage-2 losses on 1 device {losses[0]}, on 8 {losses[1]}")
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


# ---- LLaRA's HitRatio@1 over 20 candidates (eval.candidates="sampled:19")
def test_hit_ratio_at_1_counts_a_tie_as_a_miss():
  # Ranks of the target (pessimistic): 0, 1 (tie with a negative), 1, 0 -> HR@1 = 2/4.
  scores = [[0.9, 0.1, 0.5], [0.5, 0.5, 0.1], [0.2, 0.3, 0.1], [0.7, 0.6, 0.65]]
  out = candidate_metrics(scores)
  assert out["hr@1"] == 0.5 and out["ranked"] == 4
  assert out["ndcg@3"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(3) + 1) / 4)


@pytest.fixture(scope="module")
def ranking_task():
  return task_of(tiny("mf:tiny", "eval.candidates=sampled:19", "eval.ranked_examples=100"))


def test_negatives_are_unseen_deterministic_and_differ_across_examples(ranking_task):
  points = ranking_task.points
  rated = {}
  for u, i in zip(points.user, points.item):  # every split
    rated.setdefault(int(u), set()).add(int(i))
  for split in ("valid", "test"):
    ranked = ranking_task.ranked(split)
    rows = ranked["rows"]
    assert len(rows) == 100 and (points.label[rows] == 1).all()
    span = points.rows(split)
    np.testing.assert_array_equal(rows, span.start + np.flatnonzero(points.label[span] > 0)[:100])
    items = ranked["item"].reshape(100, 20)
    np.testing.assert_array_equal(items[:, 0], points.item[rows])
    np.testing.assert_array_equal(ranked["user"].reshape(100, 20), np.repeat(points.user[rows][:, None], 20, 1))
    for r, row in zip(rows, items):
      assert len(set(row[1:])) == 19 and not set(row[1:].tolist()) & rated[int(points.user[r])]
      assert row.min() >= 1 and row.max() <= points.num_items
    assert len({tuple(sorted(row[1:])) for row in items}) == 100
  # Same user, other example: other negatives. Seeded by example index: a smaller cap or another task
  # object draws the same negatives for the same examples.
  items = ranking_task.ranked("valid")["item"].reshape(100, 20)
  users = points.user[ranking_task.ranked("valid")["rows"]]
  twice = [u for u in set(users.tolist()) if (users == u).sum() > 1]
  assert twice and all(len({tuple(items[k, 1:]) for k in np.flatnonzero(users == u)}) > 1 for u in twice)
  fewer = task_of(tiny("mf:tiny", "eval.candidates=sampled:19", "eval.ranked_examples=30")).ranked("valid")
  np.testing.assert_array_equal(fewer["item"], items[:30].reshape(-1))


def test_ranking_settings_that_cannot_work_fail_before_training():
  with pytest.raises(
    ConfigError,
    match=r"eval\.candidates=sampled:50: user \d+ of synthetic rated all but 44 of the "
    r"64 items; lower N",
  ):
    task_of(tiny("mf:tiny", "eval.candidates=sampled:50"))
  with pytest.raises(ConfigError, match=r"eval\.ranked_examples=-1: need >= 0 \(0 = every positive\)"):
    task_of(tiny("mf:tiny", "eval.candidates=sampled:19", "eval.ranked_examples=-1"))


def test_evaluator_reports_hr_at_1_of_known_scores(ranking_task, monkeypatch):
  """A stub predictor scores each (user, item) from a table with many ties; HR@1 by hand from that table."""
  table = np.random.default_rng(5).integers(0, 6, (ranking_task.points.num_users, 65)).astype(np.float32)
  stub = lambda placed, batch_size: lambda params, other, arrays: table[arrays["user"], arrays["item"]]
  monkeypatch.setattr(pointwise_lib, "make_predictor", stub)
  summary, _ = ranking_task.evaluator(None)(None, None, "test")
  ranked = ranking_task.ranked("test")
  users, items = ranked["user"].reshape(100, 20), ranked["item"].reshape(100, 20)
  hits = [all(table[u[0], row[0]] > table[u[0], n] for n in row[1:]) for u, row in zip(users, items)]
  ties = sum(table[u[0], row[0]] == table[u[0], row[1:]].max() for u, row in zip(users, items))
  print(
    f"stub scores: HR@1 {summary['hr@1']:.2f} by hand {np.mean(hits):.2f}; {ties} of 100 targets tie the best negative"
  )
  assert ties > 5 and summary["hr@1"] == pytest.approx(np.mean(hits)) and summary["ranked"] == 100
  assert {"auc", "uauc", "logloss", "ndcg@20"} <= set(summary)
  protocol = ranking_task.protocol()
  assert protocol["candidates"] == "sampled:19" and "first 100 positive" in protocol["ranking"]["examples"]
  assert "rated in no split" in protocol["ranking"]["candidates"] and "pessimistic" in protocol["ranking"]["ties"]


def test_llara_presets_rank_and_a_trained_collm_beats_chance_at_hr_at_1(trained):
  """Training llara:tiny here would cost ~35 s more; CoLLM (the same model class and harness, its [U]/[I]/[T]
  template) stands in for the ranking-after-training check. Measured outside the suite, llara:tiny reaches
  HR@1 0.094 valid / 0.102 test (128 examples each). The ceiling on this planted set is low: ~4.7 of the 19
  negatives share the user's cluster, so an oracle of the clusters (ties broken at random) gets 0.17 / 0.20."""
  for preset in ("llara:tiny", "llara:ml100k"):
    cfg = genrec.configs.get(preset)
    assert (cfg.eval.candidates, cfg.eval.ranked_examples, cfg.trainer.best_metric) == ("sampled:19", 200, "auc")
  _, results, _, _ = trained["collm"]
  test, valid = results["test"], results["valid"]
  print(
    f"collm:tiny, 100 steps: HR@1 valid {valid['hr@1']:.3f} (n={valid['ranked']}), test {test['hr@1']:.3f} "
    f"(n={test['ranked']}); chance 0.05; NDCG@20 test {test['ndcg@20']:.3f}"
  )
  hits = valid["hr@1"] * valid["ranked"] + test["hr@1"] * test["ranked"]
  assert hits / (valid["ranked"] + test["ranked"]) > 0.09  # chance 0.05; 0.09 is 3 sd above it
  assert results["protocol"]["candidates"] == "sampled:19"
  table = results_table(results)
  assert "| HR@1 | ranked |" in table and f"{test['hr@1']:.4f} | {test['ranked']} |" in table
