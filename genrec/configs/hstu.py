"""HSTU presets. ml1m / ml20m mirror the reference's HSTU-large configs (meta-recsys/generative-recommenders,
configs/ml-*/hstu-sampled-softmax-n128-large-final.gin: sampled softmax, 128 negatives, temperature 0.05, L2-normalised
embeddings, max length 200, batch 128, lr 1e-3, no warmup or weight decay, 101 epochs ≈ steps below).
Reference full-ranking numbers (HR@10 / NDCG@10): ML-1M HSTU-large 0.3294 / 0.1893, ML-20M 0.3556 / 0.2098.
"""

from genrec.config import DataConfig, EvalConfig, ExperimentConfig, TrainerConfig
from genrec.models.hstu import HSTUConfig


def tiny() -> ExperimentConfig:
  """Seconds on a CPU: the synthetic dataset with a planted successor rule."""
  return ExperimentConfig(
    model=HSTUConfig(dim=32, num_layers=1, num_heads=2, qk_dim=16, v_dim=16, dropout=0.1, emb_dropout=0.1),
    model_name="hstu",
    preset="tiny",
    data=DataConfig(dataset="synthetic", max_len=10),
    trainer=TrainerConfig(
      steps=60, batch_size=64, learning_rate=3e-3, warmup_steps=10, eval_every=30, checkpoint_every=30, log_every=10
    ),
    eval=EvalConfig(batch_size=64),
  )


def ml100k() -> ExperimentConfig:
  """MovieLens-100k, leave-one-out, full ranking; the same data and budget as sasrec:ml100k."""
  return ExperimentConfig(
    model=HSTUConfig(dim=64, num_layers=2, num_heads=2, qk_dim=32, v_dim=32, dropout=0.2, emb_dropout=0.2),
    model_name="hstu",
    preset="ml100k",
    data=DataConfig(dataset="ml-100k", max_len=50, train_window="random"),
    trainer=TrainerConfig(
      steps=800,
      batch_size=128,
      learning_rate=1e-3,
      warmup_steps=100,
      weight_decay=0.0,
      eval_every=100,
      checkpoint_every=400,
      log_every=50,
    ),
    eval=EvalConfig(batch_size=256),
  )


def _reference(dataset: str, model: HSTUConfig, steps: int, eval_every: int, preset: str) -> ExperimentConfig:
  return ExperimentConfig(
    model=model,
    model_name="hstu",
    preset=preset,
    data=DataConfig(dataset=dataset, max_len=200, train_window="last"),
    trainer=TrainerConfig(
      steps=steps,
      batch_size=128,
      learning_rate=1e-3,
      warmup_steps=0,
      weight_decay=0.0,
      eval_every=eval_every,
      checkpoint_every=eval_every,
      log_every=50,
    ),
    eval=EvalConfig(batch_size=256),
  )


def ml1m() -> ExperimentConfig:
  """ML-1M HSTU-large: 8 layers, 2 heads, dqk = dv = 25, embedding 50; 6,040 users → 47 steps per epoch."""
  return _reference(
    "ml-1m",
    HSTUConfig(
      dim=50,
      num_layers=8,
      num_heads=2,
      qk_dim=25,
      v_dim=25,
      dropout=0.2,
      emb_dropout=0.2,
      loss="sampled_softmax",
      num_negatives=128,
      temperature=0.05,
    ),
    steps=4750,
    eval_every=235,
    preset="ml1m",
  )


def ml20m() -> ExperimentConfig:
  """ML-20M HSTU-large: 8 layers, 4 heads, dqk = dv = 64, embedding 256; 138,493 users → 1,082 steps per epoch."""
  return _reference(
    "ml-20m",
    HSTUConfig(
      dim=256,
      num_layers=8,
      num_heads=4,
      qk_dim=64,
      v_dim=64,
      dropout=0.1,
      emb_dropout=0.2,
      loss="sampled_softmax",
      num_negatives=128,
      temperature=0.05,
    ),
    steps=109_000,
    eval_every=5_000,
    preset="ml20m",
  )


default = ml100k
PRESETS = {"tiny": tiny, "ml100k": ml100k, "ml1m": ml1m, "ml20m": ml20m, "default": ml100k}
