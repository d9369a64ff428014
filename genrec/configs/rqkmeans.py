"""RQ-KMeans semantic-ID tokenizer presets: residual k-means fitted once, no gradient steps."""

import dataclasses

from genrec.config import TrainerConfig
from genrec.configs import rqvae
from genrec.models.semantic_ids import RQKMeansConfig


def _from(rq_preset, levels, codebook_size):
  cfg = rq_preset()
  return dataclasses.replace(
    cfg,
    model=RQKMeansConfig(levels=levels, codebook_size=codebook_size),
    model_name="rqkmeans",
    trainer=TrainerConfig(steps=0, best_metric="recon", best_mode="min"),
  )


def tiny():
  return dataclasses.replace(_from(rqvae.tiny, 2, 8), preset="tiny")


def ml100k():
  return dataclasses.replace(_from(rqvae.ml100k, 3, 64), preset="ml100k")


PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}
