"""Semantic-ID tokenizers: k-means, residual k-means (RQ-KMeans), the RQ-VAE model, and collision handling.

Importing this package registers the "rqvae" and "rqkmeans" models.
"""

from genrec.models.semantic_ids.collisions import CodeTableError, code_stats, dedup_codes
from genrec.models.semantic_ids.kmeans import kmeans, lloyd_step, nearest
from genrec.models.semantic_ids.rqkmeans import RQKMeans, RQKMeansConfig, fit_rqkmeans, rq_decode, rq_encode
from genrec.models.semantic_ids.rqvae import RQVAE, RQVAEConfig, rotate_to, straight_through

__all__ = [
  "RQKMeans",
  "RQKMeansConfig",
  "RQVAE",
  "RQVAEConfig",
  "CodeTableError",
  "code_stats",
  "dedup_codes",
  "fit_rqkmeans",
  "kmeans",
  "lloyd_step",
  "nearest",
  "rotate_to",
  "rq_decode",
  "rq_encode",
  "straight_through",
]
