"""ContentRec presets: a UniSRec-style sequential retriever over frozen item content vectors.

`data.item_embeddings` chooses the content (text:minilm, or run:mmenc:PRESET for fused multimodal vectors);
`model.content_dim` below is a placeholder used before the table is known (e.g. by `eval_shape` in the preset
tests): training sizes it from the table. Items held out of training (`data.cold_items`) stay scorable.
"""

from genrec.config import DataConfig, EvalConfig, ExperimentConfig, TrainerConfig
from genrec.models.contentrec import ContentRecConfig


def tiny() -> ExperimentConfig:
  """Seconds on a CPU: the synthetic dataset with random content vectors (random:16 carries no signal, so
  this preset only exercises the code; point data.item_embeddings at real content to learn from it)."""
  return ExperimentConfig(
    model=ContentRecConfig(
      content_dim=16,
      dim=32,
      num_layers=1,
      num_heads=2,
      mlp_dim=64,
      dropout=0.1,
      emb_dropout=0.1,
      num_experts=2,
      temperature=0.1,
    ),
    model_name="contentrec",
    preset="tiny",
    data=DataConfig(dataset="synthetic", max_len=10, item_embeddings="random:16"),
    trainer=TrainerConfig(
      steps=60, batch_size=64, learning_rate=3e-3, warmup_steps=10, eval_every=30, checkpoint_every=30, log_every=10
    ),
    eval=EvalConfig(batch_size=64),
  )


def ml100k() -> ExperimentConfig:
  """MovieLens-100k, leave-one-out, full ranking; all-MiniLM-L6-v2 item texts (title, year, genres) through
  UniSRec's MoE adaptor (8 experts) into SASRec's ml100k shape. Not tuned on the validation split."""
  return ExperimentConfig(
    model=ContentRecConfig(
      content_dim=384,
      dim=64,
      num_layers=2,
      num_heads=2,
      mlp_dim=256,
      dropout=0.2,
      emb_dropout=0.2,
      num_experts=8,
      temperature=0.07,
    ),
    model_name="contentrec",
    preset="ml100k",
    data=DataConfig(
      dataset="ml-100k", max_len=50, train_window="random", item_embeddings="text:minilm", empty_item_text="placeholder"
    ),
    trainer=TrainerConfig(
      steps=800,
      batch_size=128,
      learning_rate=1e-3,
      warmup_steps=100,
      eval_every=100,
      checkpoint_every=500,
      log_every=50,
    ),
    eval=EvalConfig(batch_size=256),
  )


default = ml100k
PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}
