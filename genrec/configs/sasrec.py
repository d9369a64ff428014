"""SASRec presets."""

from genrec.config import DataConfig, EvalConfig, ExperimentConfig, TrainerConfig
from genrec.models.sasrec import SASRecConfig


def tiny() -> ExperimentConfig:
  """Seconds on a CPU: the synthetic dataset with a planted successor rule."""
  return ExperimentConfig(
    model=SASRecConfig(dim=32, num_layers=1, num_heads=2, mlp_dim=64, dropout=0.1, emb_dropout=0.1),
    model_name="sasrec",
    preset="tiny",
    data=DataConfig(dataset="synthetic", max_len=10),
    trainer=TrainerConfig(
      steps=60, batch_size=64, learning_rate=3e-3, warmup_steps=10, eval_every=30, checkpoint_every=30, log_every=10
    ),
    eval=EvalConfig(batch_size=64),
  )


def ml100k() -> ExperimentConfig:
  """MovieLens-100k, leave-one-out, full ranking. Tuned on the validation split (benchmarks/sasrec_ml100k.py):
  RecBole's block order and initialisation plus a learned per-distance history bias (README, Results)."""
  model = SASRecConfig(
    dim=64,
    num_layers=2,
    num_heads=2,
    mlp_dim=256,
    dropout=0.2,
    emb_dropout=0.2,
    block="post_norm",
    input_norm=True,
    init_std=0.02,
    emb_scale=False,
    history_bias="recency",
  )
  return ExperimentConfig(
    model=model,
    model_name="sasrec",
    preset="ml100k",
    data=DataConfig(dataset="ml-100k", max_len=50, train_window="random"),
    trainer=TrainerConfig(
      steps=800,
      batch_size=128,
      learning_rate=1e-3,
      warmup_steps=100,
      weight_decay=0.0,
      eval_every=100,
      checkpoint_every=500,
      log_every=50,
    ),
    eval=EvalConfig(batch_size=256),
  )


default = ml100k
PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}
