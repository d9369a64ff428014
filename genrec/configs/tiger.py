"""TIGER presets (stage 3: semantic-ID tokens -> generative retrieval with constrained beam search).

`model.tokenizer` names the stage that gives the item -> semantic ID table; `genrec train tiger:...` runs it
first (or reuses an earlier run of the same config) and sizes code_levels / codebook_size from its table (the
values below are placeholders used before the table is known, e.g. by `eval_shape` in the preset tests).
"""

from genrec.config import DataConfig, EvalConfig, ExperimentConfig, TrainerConfig
from genrec.models.tiger import TigerConfig


def tiny() -> ExperimentConfig:
  """Seconds on a CPU: the synthetic dataset (64 items), 2 levels x 8 codes + the collision digit. One target
  per row (the encoder sees the whole history), so more steps than sasrec:tiny and random windows."""
  return ExperimentConfig(
    model=TigerConfig(
      code_levels=3,
      codebook_size=8,
      num_user_buckets=64,
      dim=32,
      enc_layers=1,
      dec_layers=1,
      num_heads=2,
      head_dim=16,
      mlp_dim=64,
      dropout=0.1,
      beam_size=20,
      tokenizer="rqkmeans:tiny",
    ),
    model_name="tiger",
    preset="tiny",
    data=DataConfig(dataset="synthetic", max_len=10, train_window="random", item_embeddings="random:16"),
    trainer=TrainerConfig(
      steps=300, batch_size=64, learning_rate=3e-3, warmup_steps=10, eval_every=100, checkpoint_every=100, log_every=20
    ),
    eval=EvalConfig(batch_size=64),
  )


def ml100k() -> ExperimentConfig:
  """MovieLens-100k, leave-one-out, all items minus seen; 3 x 64 codes + the collision digit.

  Semantic IDs: RQ-VAE (`rqvae:ml100k`) over the fused item embeddings of `mmenc:ml100k` (MiniLM text, genres and
  an ID embedding trained contrastively on the training sequences; ~1 min on this CPU): on one semantic-ID table
  they gave test NDCG@10 0.0744 against 0.0534 for MiniLM text alone.
  Model: the paper's shape is 4+4 layers, d=128, 6 heads x 64, FFN 1024, dropout 0.1, for Amazon categories of
  ~20-35k users. For 943 users and a 2-core CPU: 2+2 layers, d=64, 2 heads x 32, FFN 256 (SASRec's width),
  dropout 0.2, batch 128, a history of the last 20 items (the paper's Amazon cap; the encoder reads 4 tokens
  per item, so 20 items are already 81 tokens). Chosen on the validation split over 3 seeds (README): d=64
  against d=128 with 4 heads x 32 and FFN 512 (valid NDCG@10 0.0951 vs 0.0948, test 0.0788 vs 0.0756; 2x
  faster). No per-user token (num_user_buckets=1): on ml-100k each user would get a token of their own, and
  without it test NDCG@10 rose from 0.0744 to 0.0776 on the same table.
  Not the paper's encoder: item_causal (one pass trains every position's next item, as SASRec's does) and
  mask_seen (the softmax covers unseen items only); seed 0 on table 82bd6515490158f6 (README, TIGER vs
  SASRec): best valid NDCG@10 0.0911 with the paper's encoder, 0.1045 with item_causal, 0.1038 with both (a tie
  on validation; mask_seen's curve was above at 4 of 6 evaluations, and it trains the softmax that the
  all_minus_seen search uses), 0.1106 with both and learning rate 2e-3 (20x the targets per step of before),
  0.1139 (at step 1250) with 2500 steps instead of 1500 (the cosine schedule stretched; dropout 0.1 there was
  behind at step 1250, 0.1088, and was stopped). mask_history (training masks the items older than the window
  too, as the search does): seed 0 on the table a clean cache builds (26a498eba100e5f3), best valid NDCG@10
  0.1126 against 0.1129 without (a tie), above it at 7 of the 10 evaluations and flat after step 1000
  (0.1106-0.1126 against 0.1037-0.1129). Three seeds from a clean cache: test NDCG@10 0.0979 ± 0.0033, valid
  0.1171 ± 0.0041 (expected_metrics/tiger.json); without mask_history 0.0955 ± 0.0057 and 0.1132 ± 0.0015.
  """
  return ExperimentConfig(
    model=TigerConfig(
      code_levels=4,
      codebook_size=64,
      num_user_buckets=1,
      dim=64,
      enc_layers=2,
      dec_layers=2,
      num_heads=2,
      head_dim=32,
      mlp_dim=256,
      dropout=0.2,
      beam_size=20,
      tokenizer="rqvae:ml100k",
      item_causal=True,
      mask_seen=True,
      mask_history=True,
    ),
    model_name="tiger",
    preset="ml100k",
    data=DataConfig(
      dataset="ml-100k",
      max_len=20,
      train_window="random",
      empty_item_text="placeholder",
      item_embeddings="run:mmenc:ml100k",
    ),
    trainer=TrainerConfig(
      steps=2500,
      batch_size=128,
      learning_rate=2e-3,
      warmup_steps=100,
      weight_decay=0.0,
      eval_every=250,
      checkpoint_every=500,
      log_every=50,
    ),
    eval=EvalConfig(batch_size=256),
  )


default = ml100k
PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}
