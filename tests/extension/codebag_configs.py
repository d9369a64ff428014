"""Presets of the codebag retriever (codebag.py): the README's worked example of a config file for a model
defined outside genrec. `genrec --import codebag_configs train codebag:tiny --workdir DIR` trains (or reuses)
its rqkmeans tokenizer stage first, then the retriever."""

import genrec.configs
from codebag import CodeBagConfig
from genrec.config import DataConfig, EvalConfig, ExperimentConfig, TrainerConfig


def tiny() -> ExperimentConfig:
  """Seconds on a CPU: the synthetic planted-successor data, item vectors at random, 2 levels of 8 codes."""
  return ExperimentConfig(
    model=CodeBagConfig(dim=32, tokenizer="rqkmeans:tiny"),
    model_name="codebag",
    preset="tiny",
    data=DataConfig(dataset="synthetic", max_len=10, item_embeddings="random:16"),
    trainer=TrainerConfig(
      steps=150, batch_size=64, learning_rate=1e-2, warmup_steps=10, eval_every=50, checkpoint_every=50, log_every=10
    ),
    eval=EvalConfig(batch_size=64),
  )


genrec.configs.register("codebag", {"tiny": tiny})
