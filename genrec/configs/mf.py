"""Matrix factorisation presets (the pointwise CF model whose embeddings the LLM-CF family reads)."""

from genrec.config import DataConfig, EvalConfig, ExperimentConfig, TrainerConfig
from genrec.models.mf import MFConfig


def tiny() -> ExperimentConfig:
  """Seconds on a CPU: planted user/item clusters (genrec.data.pointwise.planted_pointwise)."""
  return ExperimentConfig(
    model=MFConfig(dim=16, l2=1e-3),
    model_name="mf",
    preset="tiny",
    data=DataConfig(dataset="synthetic", max_len=10),
    trainer=TrainerConfig(
      steps=150,
      batch_size=256,
      learning_rate=2e-2,
      warmup_steps=10,
      eval_every=50,
      checkpoint_every=150,
      log_every=25,
      best_metric="auc",
      best_mode="max",
      clip_norm=0.0,
    ),
    eval=EvalConfig(split="temporal", batch_size=256),
  )


def ml100k() -> ExperimentConfig:
  """MovieLens-100k, every rating, label = rating > 3, global time split 80/10/10 (CoLLM's protocol)."""
  return ExperimentConfig(
    model=MFConfig(dim=64, l2=0.03),
    model_name="mf",
    preset="ml100k",
    data=DataConfig(dataset="ml-100k", max_len=10),
    trainer=TrainerConfig(
      steps=600,
      batch_size=1024,
      learning_rate=1e-2,
      warmup_steps=50,
      eval_every=50,
      checkpoint_every=500,
      log_every=50,
      best_metric="auc",
      best_mode="max",
      clip_norm=0.0,
    ),
    eval=EvalConfig(split="temporal", batch_size=1024),
  )


default = ml100k
PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}
