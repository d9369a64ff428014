"""The Llama/Qwen2 decoder against an independent NumPy float64 forward pass on tiny random HF checkpoints;
padding, causality, KV-cache decoding, greedy generation, sharded/bf16 checkpoints, errors, 1 == 8 devices."""

import json
import math
import struct

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from safetensors.numpy import save_file

from genrec import config as config_lib
from genrec.config import DEFAULT_RULES, MeshConfig
from genrec.models.layers.rope import RopeConfig, inverse_frequencies
from genrec.models.llm import LLMConfig, abstract_lm, generate, load_config, load_llm, load_tokenizer
from genrec.models.llm.hf_import import read_bf16
from genrec.models.text import CheckpointError
from genrec.train.sharding import make_mesh, state_shardings

LLAMA = dict(
  model_type="llama",
  architectures=["LlamaForCausalLM"],
  vocab_size=256,
  hidden_size=64,
  num_hidden_layers=2,
  num_attention_heads=4,
  num_key_value_heads=2,
  intermediate_size=128,
  hidden_act="silu",
  rms_norm_eps=1e-5,
  rope_theta=10000.0,
  tie_word_embeddings=False,
  max_position_embeddings=128,
  attention_bias=False,
  rope_scaling={
    "rope_type": "llama3",
    "factor": 4.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
  },
)
QWEN2 = dict(
  model_type="qwen2",
  architectures=["Qwen2ForCausalLM"],
  vocab_size=200,
  hidden_size=48,
  num_hidden_layers=2,
  num_attention_heads=4,
  num_key_value_heads=1,
  intermediate_size=96,
  hidden_act="silu",
  rms_norm_eps=1e-6,
  rope_theta=1000000.0,
  tie_word_embeddings=True,
  max_position_embeddings=128,
  use_sliding_window=False,
)
FAMILIES = {"llama": LLAMA, "qwen2": QWEN2}
B, L = 3, 16


# ---- an independent reference: plain NumPy, float64, one unpadded sequence at a time, HF names and layout
def np_inv_freq(hf, head_dim):
  base, scaling = hf["rope_theta"], hf.get("rope_scaling") or {}
  out = []
  for i in range(0, head_dim, 2):
    f = base ** (-i / head_dim)
    if scaling.get("rope_type") == "linear":
      f = f / scaling["factor"]
    elif scaling.get("rope_type") == "llama3":
      orig, lo, hi, factor = (
        scaling["original_max_position_embeddings"],
        scaling["low_freq_factor"],
        scaling["high_freq_factor"],
        scaling["factor"],
      )
      wavelen = 2 * math.pi / f
      if wavelen > orig / lo:
        f = f / factor
      elif wavelen >= orig / hi:
        s = (orig / wavelen - lo) / (hi - lo)
        f = (1 - s) * f / factor + s * f
    out.append(f)
  return np.array(out)


def np_rope(x_LxHxK, inv_K2):
  ang = np.arange(x_LxHxK.shape[0])[:, None] * inv_K2[None]
  cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None], np.sin(np.concatenate([ang, ang], -1))[:, None]
  half = x_LxHxK.shape[-1] // 2
  rotated = np.concatenate([-x_LxHxK[..., half:], x_LxHxK[..., :half]], -1)
  return x_LxHxK * cos + rotated * sin


def np_logits(tensors, hf, ids):
  g = lambda name: tensors[name].astype(np.float64)
  eps, heads, kv_heads = hf["rms_norm_eps"], hf["num_attention_heads"], hf["num_key_value_heads"]
  head_dim, n = hf["hidden_size"] // heads, len(ids)
  rms = lambda x, w: x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * w
  inv = np_inv_freq(hf, head_dim)
  x = g("model.embed_tokens.weight")[ids]
  for i in range(hf["num_hidden_layers"]):
    p = f"model.layers.{i}."
    lin = lambda h, name: (
      h @ g(p + name + ".weight").T + (g(p + name + ".bias") if p + name + ".bias" in tensors else 0.0)
    )
    h = rms(x, g(p + "input_layernorm.weight"))
    q = np_rope(lin(h, "self_attn.q_proj").reshape(n, heads, head_dim), inv)
    k = np_rope(lin(h, "self_attn.k_proj").reshape(n, kv_heads, head_dim), inv)
    v = lin(h, "self_attn.v_proj").reshape(n, kv_heads, head_dim)
    k, v = np.repeat(k, heads // kv_heads, axis=1), np.repeat(v, heads // kv_heads, axis=1)
    s = np.einsum("lhd,shd->hls", q, k) / np.sqrt(head_dim) + np.triu(np.full((n, n), -np.inf), 1)
    a = np.exp(s - s.max(-1, keepdims=True))
    a = a / a.sum(-1, keepdims=True)
    x = x + lin(np.einsum("hls,shd->lhd", a, v).reshape(n, -1), "self_attn.o_proj")
    h = rms(x, g(p + "post_attention_layernorm.weight"))
    gate = lin(h, "mlp.gate_proj")
    x = x + lin(gate / (1 + np.exp(-gate)) * lin(h, "mlp.up_proj"), "mlp.down_proj")
  x = rms(x, g("model.norm.weight"))
  head = "model.embed_tokens.weight" if hf["tie_word_embeddings"] else "lm_head.weight"
  return x @ g(head).T


# ---- tiny random checkpoints in HF layout
def random_tensors(hf, seed=0):
  rng = np.random.default_rng(seed)
  d, f, vocab = hf["hidden_size"], hf["intermediate_size"], hf["vocab_size"]
  hd = d // hf["num_attention_heads"]
  q_dim, kv_dim = hf["num_attention_heads"] * hd, hf["num_key_value_heads"] * hd
  r = lambda *shape, s=0.1: (rng.standard_normal(shape) * s).astype(np.float32)
  t = {"model.embed_tokens.weight": r(vocab, d, s=1.0), "model.norm.weight": 1 + r(d)}
  if not hf["tie_word_embeddings"]:
    t["lm_head.weight"] = r(vocab, d)
  for i in range(hf["num_hidden_layers"]):
    p = f"model.layers.{i}."
    for name, (rows, cols) in {"q": (q_dim, d), "k": (kv_dim, d), "v": (kv_dim, d), "o": (d, q_dim)}.items():
      t[f"{p}self_attn.{name}_proj.weight"] = r(rows, cols)
      if hf["model_type"] == "qwen2" and name != "o":
        t[f"{p}self_attn.{name}_proj.bias"] = r(rows)
    t[p + "mlp.gate_proj.weight"], t[p + "mlp.up_proj.weight"], t[p + "mlp.down_proj.weight"] = (
      r(f, d),
      r(f, d),
      r(d, f),
    )
    t[p + "input_layernorm.weight"], t[p + "post_attention_layernorm.weight"] = 1 + r(d), 1 + r(d)
  return t


def write_checkpoint(folder, tensors, hf, shards=1):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps(hf))
  if shards == 1:
    save_file(tensors, str(folder / "model.safetensors"))
    return folder
  names, weight_map = sorted(tensors), {}
  for s in range(shards):
    file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
    part = names[s::shards]
    save_file({n: tensors[n] for n in part}, str(folder / file))
    weight_map.update({n: file for n in part})
  index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}
  (folder / "model.safetensors.index.json").write_text(json.dumps(index))
  return folder


def save_bf16(tensors, file):
  """The safetensors layout by hand: not every safetensors version can write ml_dtypes.bfloat16."""
  header, blobs, offset = {}, [], 0
  for name, a in tensors.items():
    blob = np.ascontiguousarray(a.astype(ml_dtypes.bfloat16)).tobytes()
    header[name] = {"dtype": "BF16", "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
    blobs.append(blob)
    offset += len(blob)
  text = json.dumps(header).encode()
  text += b" " * (-len(text) % 8)
  file.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def padded_batch(vocab, seed=1):
  """Row 0 full, row 1 left-padded by 5, row 2 right-padded by 4; pad slots hold random junk ids."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, vocab, (B, L)).astype(np.int32)
  valid = np.ones((B, L), bool)
  valid[1, :5] = False
  valid[2, L - 4 :] = False
  return ids, valid


@nnx.jit
def forward(lm, ids_BxL, valid_BxL):
  return lm(ids_BxL, valid_BxL)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def ckpt(request, tmp_path_factory):
  hf = FAMILIES[request.param]
  tensors = random_tensors(hf)
  folder = write_checkpoint(tmp_path_factory.mktemp(request.param), tensors, hf)
  return hf, tensors, folder, load_llm(folder)


def assert_matches_reference(lm, tensors, hf, label):
  ids, valid = padded_batch(hf["vocab_size"])
  got = np.asarray(forward(lm, jnp.asarray(ids), jnp.asarray(valid)))
  err, scale = 0.0, 0.0
  for b in range(B):
    ref = np_logits(tensors, hf, ids[b, valid[b]])
    err, scale = max(err, np.abs(got[b, valid[b]] - ref).max()), max(scale, np.abs(ref).max())
  print(f"{label}: max abs diff vs NumPy float64 reference {err:.2e} (logits up to {scale:.1f})")
  assert err <= 1e-5 * scale
  return got


def test_import_matches_numpy_reference_with_left_and_right_padding(ckpt):
  hf, tensors, _, lm = ckpt
  cfg = lm.cfg
  assert cfg.family == hf["model_type"] and cfg.kv_heads < cfg.heads
  assert (cfg.tie_embeddings, cfg.qkv_bias) == ((True, True) if cfg.family == "qwen2" else (False, False))
  assert (lm.lm_head is None) == cfg.tie_embeddings
  assert_matches_reference(lm, tensors, hf, cfg.family)
  layer = lm.layers[1]
  assert layer.attn.q.kernel.get_metadata()["out_sharding"] == ("embed", "heads")
  assert layer.mlp.up.kernel.get_metadata()["out_sharding"] == ("embed", "mlp")
  assert lm.tokens.embedding.get_metadata()["out_sharding"] == ("vocab", "embed")
  for path, var in nnx.to_flat_state(nnx.state(lm)):
    assert len(var.get_metadata()["out_sharding"]) == var.ndim, path


def test_padding_content_and_side_do_not_change_real_logits(ckpt):
  hf, _, _, lm = ckpt
  ids, valid = padded_batch(hf["vocab_size"])
  base = np.asarray(forward(lm, jnp.asarray(ids), jnp.asarray(valid)))
  # row 1's 11 real tokens moved to the right end of the row, pads to the left, other junk in the pads
  ids2, valid2 = ids.copy(), valid.copy()
  ids2[1], valid2[1] = np.concatenate([ids[1, 5:], np.full(5, 7)]), np.arange(L) < L - 5
  ids2[2, ~valid[2]] = 3
  moved = np.asarray(forward(lm, jnp.asarray(ids2), jnp.asarray(valid2)))
  np.testing.assert_allclose(moved[1, : L - 5], base[1, 5:], atol=1e-5)
  np.testing.assert_allclose(moved[2, valid[2]], base[2, valid[2]], atol=1e-5)


def test_causal_future_tokens_do_not_change_earlier_logits(ckpt):
  hf, _, _, lm = ckpt
  ids, _ = padded_batch(hf["vocab_size"])
  valid = np.ones((B, L), bool)
  changed = ids.copy()
  changed[:, 9:] = (ids[:, 9:] + 1) % hf["vocab_size"]
  a = np.asarray(forward(lm, jnp.asarray(ids), jnp.asarray(valid)))
  b = np.asarray(forward(lm, jnp.asarray(changed), jnp.asarray(valid)))
  np.testing.assert_array_equal(a[:, :9], b[:, :9])
  assert np.abs(a[:, 9:] - b[:, 9:]).max() > 1e-3


@nnx.jit
def decode(lm, ids_BxT, cache, valid_BxT):
  return lm.decode_step(ids_BxT, cache, valid_BxT)


def test_kv_cache_decode_equals_full_forward(ckpt):
  hf, _, _, lm = ckpt
  ids, valid = padded_batch(hf["vocab_size"])
  valid[2, 8:12] = False  # row 2: a gap mid-sequence, then more tokens
  valid[2, 12:] = True
  full = np.asarray(forward(lm, jnp.asarray(ids), jnp.asarray(valid)))
  cache = lm.init_cache(B, L)
  prefill, cache = decode(lm, jnp.asarray(ids[:, :10]), cache, jnp.asarray(valid[:, :10]))
  steps = [prefill]
  for t in range(10, L):
    out, cache = decode(lm, jnp.asarray(ids[:, t : t + 1]), cache, jnp.asarray(valid[:, t : t + 1]))
    steps.append(out)
  got = np.concatenate([np.asarray(s) for s in steps], axis=1)
  err = np.abs(got[valid] - full[valid]).max()
  print(f"{lm.cfg.family}: KV-cache decode vs full forward max abs diff {err:.2e}")
  assert err <= 1e-5 * np.abs(full).max()
  assert int(cache.index) == L and cache.next_pos_B.tolist() == valid.sum(1).tolist()


@pytest.mark.parametrize("ckpt", ["qwen2"], indirect=True)
def test_greedy_generate_equals_argmax_of_full_forward(ckpt):
  hf, _, _, lm = ckpt
  ids, valid = padded_batch(hf["vocab_size"])
  prompt, new = 10, L - 10
  valid[2, 6:prompt] = False  # row 2 right-padded within the prompt
  buf, buf_valid = ids.copy(), valid.copy()
  buf_valid[:, prompt:] = False
  for t in range(prompt, L):
    logits = np.asarray(forward(lm, jnp.asarray(buf), jnp.asarray(buf_valid)))
    last = np.array([np.flatnonzero(row).max() for row in buf_valid])
    buf[:, t], buf_valid[:, t] = logits[np.arange(B), last].argmax(-1), True
  expected = buf[:, prompt:]
  got = np.asarray(generate(lm, jnp.asarray(ids[:, :prompt]), jnp.asarray(valid[:, :prompt]), max_new_tokens=new))
  np.testing.assert_array_equal(got, expected)
  eos = int(expected[0, 1])
  got = np.asarray(
    generate(
      lm, jnp.asarray(ids[:, :prompt]), jnp.asarray(valid[:, :prompt]), max_new_tokens=new, eos_id=eos, pad_id=-1
    )
  )
  for b in range(B):
    hits = np.flatnonzero(expected[b] == eos)
    stop = hits[0] + 1 if len(hits) else new
    np.testing.assert_array_equal(got[b, :stop], expected[b, :stop])
    assert (got[b, stop:] == -1).all()


def test_sharded_index_loads_the_same_model(tmp_path):
  tensors = random_tensors(QWEN2, seed=3)
  single = load_llm(write_checkpoint(tmp_path / "one", tensors, QWEN2))
  placed = []
  sharded = load_llm(
    write_checkpoint(tmp_path / "two", tensors, QWEN2, shards=2),
    place=lambda path, a: placed.append(path) or jnp.asarray(a),
  )
  assert len(list((tmp_path / "two").glob("model-*-of-00002.safetensors"))) == 2
  a, b = nnx.to_flat_state(nnx.state(single)), dict(nnx.to_flat_state(nnx.state(sharded)))
  assert sorted(placed) == sorted(p for p, _ in a) and len(placed) == len(a)
  for path, var in a:
    np.testing.assert_array_equal(np.asarray(var.get_value()), np.asarray(b[path].get_value()))
  (tmp_path / "two" / "model-00002-of-00002.safetensors").unlink()
  with pytest.raises(CheckpointError, match=r"shard\(s\) \['model-00002-of-00002\.safetensors'\]"):
    load_llm(tmp_path / "two")


def test_bfloat16_checkpoint(tmp_path):
  tensors = random_tensors(LLAMA, seed=4)
  folder = tmp_path / "bf16"
  folder.mkdir()
  (folder / "config.json").write_text(json.dumps(LLAMA))
  save_bf16(tensors, folder / "model.safetensors")
  rounded = {k: v.astype(ml_dtypes.bfloat16).astype(np.float32) for k, v in tensors.items()}
  name = "model.layers.1.mlp.down_proj.weight"
  raw = read_bf16(folder / "model.safetensors", name)
  assert raw.dtype == ml_dtypes.bfloat16 and np.array_equal(raw.astype(np.float32), rounded[name])
  assert_matches_reference(load_llm(folder), rounded, LLAMA, "llama from bf16")
  lm16 = load_llm(folder, dtype=jnp.bfloat16)
  kernel = lm16.layers[1].mlp.down.kernel.get_value()
  assert kernel.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(kernel, np.float32), rounded[name].T)


@pytest.mark.parametrize("ckpt", ["qwen2"], indirect=True)
def test_one_device_equals_eight_devices(ckpt):
  hf, _, folder, lm = ckpt
  mesh = make_mesh(MeshConfig(data=1, fsdp=2, tensor=4))
  shardings = dict(nnx.to_flat_state(state_shardings(nnx.state(abstract_lm(lm.cfg)), mesh, DEFAULT_RULES)))
  sharded = load_llm(folder, place=lambda path, a: jax.device_put(a, shardings[path].get_value()))
  q = sharded.layers[0].attn.q.kernel.get_value()
  assert q.sharding.spec == P("fsdp", "tensor") and len(q.sharding.device_set) == 8
  ids, valid = padded_batch(hf["vocab_size"])
  one = np.asarray(forward(lm, jnp.asarray(ids), jnp.asarray(valid)))
  with jax.set_mesh(mesh):
    rep = NamedSharding(mesh, P())
    eight = np.asarray(forward(sharded, jax.device_put(ids, rep), jax.device_put(valid, rep)))
  np.testing.assert_allclose(eight, one, atol=1e-5 * np.abs(one).max())


# ---- configs
def test_configs_round_trip_and_qwen2_0_5b_has_its_published_size():
  for cfg in (LLMConfig.tiny(), LLMConfig.qwen2_0_5b(), LLMConfig.from_hf_config(LLAMA)):
    assert LLMConfig.from_hf_config(cfg.to_hf_config()) == cfg
    assert config_lib.from_dict(LLMConfig, json.loads(json.dumps(config_lib.to_dict(cfg)))) == cfg
  q = LLMConfig.qwen2_0_5b()
  params = sum(math.prod(v.shape) for _, v in nnx.to_flat_state(nnx.state(abstract_lm(q))))
  assert params == 494_032_768
  llama = LLMConfig.from_hf_config(LLAMA)
  assert llama.rope == RopeConfig(10000.0, "llama3", 4.0, 1.0, 4.0, 16) and not llama.o_bias
  assert LLMConfig.from_hf_config({**LLAMA, "attention_bias": True}).o_bias


def test_rope_linear_scaling_and_unsupported_types():
  linear = RopeConfig.from_hf({"rope_theta": 500.0, "rope_scaling": {"type": "linear", "factor": 2.0}})
  hf = {"rope_theta": 500.0, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}
  np.testing.assert_allclose(inverse_frequencies(8, linear), np_inv_freq(hf, 8), rtol=1e-6)
  v5 = RopeConfig.from_hf({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}})
  assert v5 == RopeConfig(theta=1e6)
  with pytest.raises(ValueError, match=r"rope_scaling type 'yarn' is not supported.*'linear', 'llama3'"):
    RopeConfig.from_hf({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})


# ---- errors that name what is wrong
def test_folder_without_config_json(tmp_path):
  (tmp_path / "model.safetensors").write_bytes(b"")
  with pytest.raises(CheckpointError, match=r"no config\.json in .*model\.safetensors"):
    load_llm(tmp_path)


def test_unsupported_model_type_lists_the_supported_ones(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({**LLAMA, "model_type": "mistral"}))
  with pytest.raises(
    CheckpointError,
    match=r"config\.json: .*model_type 'mistral' is not supported.*"
    r"\('llama', 'qwen2'\)",
  ):
    load_config(tmp_path)


def test_wrong_shape_names_the_tensor_and_both_shapes(tmp_path):
  tensors = random_tensors(LLAMA)
  tensors["model.layers.1.self_attn.k_proj.weight"] = np.zeros((64, 64), np.float32)
  with pytest.raises(
    CheckpointError,
    match=r"model\.layers\.1\.self_attn\.k_proj\.weight has shape \(64, 64\) "
    r"but the config implies \(32, 64\)",
  ):
    load_llm(write_checkpoint(tmp_path / "bad", tensors, LLAMA))


def test_missing_and_unexpected_tensors_are_listed(tmp_path):
  tensors = random_tensors(QWEN2)
  del tensors["model.layers.0.self_attn.v_proj.bias"]
  tensors["model.layers.0.self_attn.o_proj.bias"] = np.zeros(48, np.float32)
  with pytest.raises(
    CheckpointError,
    match=r"missing tensors \['model\.layers\.0\.self_attn\.v_proj\.bias'\] "
    r"\(expected model\.layers\.0\.self_attn\.v_proj\.bias \(12,\)\); "
    r"unexpected tensors \['model\.layers\.0\.self_attn\.o_proj\.bias'\]",
  ):
    load_llm(write_checkpoint(tmp_path / "bad", tensors, QWEN2))
  with pytest.raises(CheckpointError, match=r"no model\.safetensors in .*model\.safetensors\.index\.json"):
    (tmp_path / "bad" / "model.safetensors").unlink()
    load_llm(tmp_path / "bad")


def test_tokenizer_missing_a_special_token(tmp_path):
  from tokenizers import Tokenizer, models, pre_tokenizers

  tok = Tokenizer(models.WordLevel({"<unk>": 0, "hello": 1, "<|im_end|>": 2}, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.save(str(tmp_path / "tokenizer.json"))
  loaded = load_tokenizer(tmp_path, required=("<|im_end|>",))
  assert loaded.encode("hello").ids == [1] and loaded.token_to_id("<|im_end|>") == 2
  with pytest.raises(CheckpointError, match=r"tokenizer\.json lacks the special token\(s\) \['<\|endoftext\|>'\]"):
    load_tokenizer(tmp_path, required=("<|im_end|>", "<|endoftext|>"))
