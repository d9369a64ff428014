"""RQ-VAE semantic-ID tokenizer presets (stage 2 of TIGER: item content embeddings -> code tuples)."""

from genrec.config import DataConfig, EvalConfig, ExperimentConfig, TrainerConfig
from genrec.models.semantic_ids import RQVAEConfig


def tiny() -> ExperimentConfig:
  return ExperimentConfig(
    model=RQVAEConfig(hidden_dims=(32,), latent_dim=8, levels=2, codebook_size=8, dead_code_steps=20),
    model_name="rqvae",
    preset="tiny",
    data=DataConfig(dataset="synthetic", item_embeddings="random:16"),
    trainer=TrainerConfig(
      steps=40,
      batch_size=32,
      learning_rate=3e-3,
      warmup_steps=5,
      eval_every=20,
      checkpoint_every=20,
      log_every=10,
      best_metric="recon",
      best_mode="min",
      b2=0.99,
    ),
    eval=EvalConfig(batch_size=32),
  )


def ml100k() -> ExperimentConfig:
  """3 levels x 64 codes for 1,682 items (TIGER's 3 x 256 would leave most codes unused on this catalogue)."""
  return ExperimentConfig(
    model=RQVAEConfig(hidden_dims=(512, 256, 128), latent_dim=32, levels=3, codebook_size=64, dead_code_steps=100),
    model_name="rqvae",
    preset="ml100k",
    data=DataConfig(dataset="ml-100k", item_embeddings="text:minilm", empty_item_text="placeholder"),
    trainer=TrainerConfig(
      steps=3000,
      batch_size=256,
      learning_rate=1e-3,
      warmup_steps=100,
      eval_every=500,
      checkpoint_every=1000,
      log_every=100,
      best_metric="recon",
      best_mode="min",
      b2=0.99,
      weight_decay=0.0,
    ),
    eval=EvalConfig(batch_size=256),
  )


PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}
