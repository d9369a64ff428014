"""mmenc presets: multimodal item encoders trained on item–item co-occurrence (InfoNCE, in-batch negatives).

`input_dims` are the widths of the frozen towers each preset uses (a different tower is a clear error at
start; set `model.input_dims=()` to take the widths from the data). The fused embeddings feed semantic IDs
with `--set data.item_embeddings=run:mmenc:PRESET` on a tokenizer or TIGER run.
"""

from genrec.config import DataConfig, EvalConfig, ExperimentConfig, TrainerConfig
from genrec.models.mmenc import MMEncConfig


def tiny() -> ExperimentConfig:
  """Seconds on a CPU: the synthetic multimodal catalogue (64 items in 8 image classes aligned with the planted
  cycle), images through a small random CLIP tower, genres and an ID embedding, gated fusion."""
  return ExperimentConfig(
    model=MMEncConfig(
      modalities=("image", "genre", "id"),
      input_dims=(64, 4),
      id_dim=16,
      fusion="gated",
      dim=32,
      hidden_dim=64,
      dropout=0.0,
      temperature=0.1,
      window=1,
      image_encoder="random:tiny",
    ),
    model_name="mmenc",
    preset="tiny",
    data=DataConfig(dataset="synthetic_mm", item_embeddings="random:16"),
    trainer=TrainerConfig(
      steps=100,
      batch_size=64,
      learning_rate=3e-3,
      warmup_steps=10,
      eval_every=50,
      checkpoint_every=100,
      log_every=25,
      best_metric="recall@10",
      best_mode="max",
    ),
    eval=EvalConfig(batch_size=64, ks=(10,)),
  )


def ml100k() -> ExperimentConfig:
  """MovieLens-100k: all-MiniLM-L6-v2 item texts (title, year, genres), the 18-genre multi-hot and an ID
  embedding (item 267 has neither text nor genre), gated fusion; pairs within 3 positions of the training
  sequences. On validation recall@10, gated beat the MoE adaptor (0.095 vs 0.083 at 1000 steps)."""
  return ExperimentConfig(
    model=MMEncConfig(
      modalities=("text", "genre", "id"),
      input_dims=(384, 18),
      fusion="gated",
      dim=64,
      dropout=0.1,
      temperature=0.07,
      window=3,
    ),
    model_name="mmenc",
    preset="ml100k",
    data=DataConfig(dataset="ml-100k", item_embeddings="text:minilm", empty_item_text="placeholder"),
    trainer=TrainerConfig(
      steps=2000,
      batch_size=256,
      learning_rate=1e-3,
      warmup_steps=100,
      eval_every=250,
      checkpoint_every=1000,
      log_every=50,
      best_metric="recall@10",
      best_mode="max",
    ),
    eval=EvalConfig(batch_size=256, ks=(10, 20)),
  )


default = ml100k
PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}


def _amazon(name: str) -> ExperimentConfig:
  return ExperimentConfig(
    model=MMEncConfig(
      modalities=("text", "image", "id"),
      input_dims=(384, 768),
      fusion="gated",
      dim=64,
      dropout=0.1,
      temperature=0.07,
      window=3,
      image_encoder="random:vit-b-32",
    ),
    model_name="mmenc",
    preset=name,
    data=DataConfig(dataset=name, item_embeddings="text:minilm", empty_item_text="placeholder"),
    trainer=TrainerConfig(
      steps=3000,
      batch_size=512,
      learning_rate=1e-3,
      warmup_steps=100,
      eval_every=500,
      checkpoint_every=1000,
      log_every=50,
      best_metric="recall@10",
      best_mode="max",
    ),
    eval=EvalConfig(batch_size=512, ks=(10, 20)),
  )


def amazon_beauty() -> ExperimentConfig:
  """Amazon 2014 Beauty 5-core: all-MiniLM-L6-v2 item texts (title, leaf categories, brand, price), the item
  image and an ID embedding, gated fusion; pairs within 3 positions. Needs the images cached first (`genrec
  datasets prepare amazon-beauty --images`); items whose image is missing or broken have no image modality.
  The image tower here is a seeded, untrained ViT-B/32 (random:vit-b-32, 768-d: a shape, not a feature
  extractor) so the preset runs offline; for real image features pass a Hugging Face CLIP folder:
  `--set model.image_encoder=DIR model.input_dims=[384,512]` (512: CLIPModel's projection; a bare
  CLIPVisionModel gives its hidden width, or set model.input_dims=[] to take the widths from the towers).
  Not tuned: the fuser is mmenc:ml100k's, with more steps and a larger batch for ~300k training pairs. The first
  run encodes every item image (ViT-B/32 at ~16 images/s on a 2-core CPU: ~13 min for Beauty's 12k items)."""
  return _amazon("amazon-beauty")


def amazon_sports() -> ExperimentConfig:
  """mmenc:amazon-beauty on Amazon 2014 Sports_and_Outdoors (`genrec datasets prepare amazon-sports --images`)."""
  return _amazon("amazon-sports")


def amazon_toys() -> ExperimentConfig:
  """mmenc:amazon-beauty on Amazon 2014 Toys_and_Games (`genrec datasets prepare amazon-toys --images`)."""
  return _amazon("amazon-toys")


PRESETS.update({"amazon-beauty": amazon_beauty, "amazon-sports": amazon_sports, "amazon-toys": amazon_toys})
