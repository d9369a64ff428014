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
      model=MMEncConfig(modalities=("image", "genre", "id"), input_dims=(64, 4), id_dim=16, fusion="gated",
                        dim=32, hidden_dim=64, dropout=0.0, temperature=0.1, window=1, image_encoder="random:tiny"),
      model_name="mmenc", preset="tiny",
      data=DataConfig(dataset="synthetic_mm", item_embeddings="random:16"),
      trainer=TrainerConfig(steps=100, batch_size=64, learning_rate=3e-3, warmup_steps=10, eval_every=50,
                            checkpoint_every=100, log_every=25, best_metric="recall@10", best_mode="max"),
      eval=EvalConfig(batch_size=64, ks=(10,)))


def ml100k() -> ExperimentConfig:
  """MovieLens-100k: all-MiniLM-L6-v2 item texts (title, year, genres), the 18-genre multi-hot and an ID
  embedding (item 267 has neither text nor genre), gated fusion; pairs within 3 positions of the training
  sequences. On validation recall@10, gated beat the MoE adaptor (0.095 vs 0.083 at 1000 steps)."""
  return ExperimentConfig(
      model=MMEncConfig(modalities=("text", "genre", "id"), input_dims=(384, 18), fusion="gated", dim=64,
                        dropout=0.1, temperature=0.07, window=3),
      model_name="mmenc", preset="ml100k",
      data=DataConfig(dataset="ml-100k", item_embeddings="text:minilm", empty_item_text="placeholder"),
      trainer=TrainerConfig(steps=2000, batch_size=256, learning_rate=1e-3, warmup_steps=100, eval_every=250,
                            checkpoint_every=1000, log_every=50, best_metric="recall@10", best_mode="max"),
      eval=EvalConfig(batch_size=256, ks=(10, 20)))


default = ml100k
PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}
