"""mmenc: a multimodal item encoder trained contrastively on item–item co-occurrence (task "item_contrastive").

Towers (`towers`): "frozen" — the text encoder, image encoder and genre multi-hot outputs are computed once by
the task and arrive in the batch; this model is the trainable part — a fuser (`genrec.models.fusion`) over those
vectors plus, when "id" is among the modalities, a learned item-ID embedding as one more modality. "lora" — each
tower named by `tower_lora_towers` (default: text only) runs inside `encode` with LoRA adapters on the linear
layers named by `tower_lora_targets`: the text tower (a BERT, `text_tower`) on each item's tokens, the image tower
(a CLIP ViT, `image_tower`; "up"/"down" name its fc1/fc2) on each item's pixels. Their base weights (loaded by the
task: the text tower from data.item_embeddings' folder, the image tower from `image_encoder`) are frozen; only the
adapters, the fuser and the ID table train (`trainable`).

Batches:
  encode: {"item": int32 [B], "present": bool [B, M], <modality>: float32 [B, D_m] for each input modality}
          → L2-normalised item vectors [B, dim] (unnormalised when `normalize=False`)
  loss:   the same keys with a pair axis after the batch: [B, 2, ...] = (anchor, positive). Symmetric InfoNCE
          over the batch: anchor i's positive is row i; the other rows' positives are its negatives, except
          rows holding the same item (a duplicate is neither a positive nor a negative).
With towers="lora" the "text" vector is replaced by "text_ids": int32 [B, L] and "text_valid": bool [B, L]
(L = text_max_length); with "image" tuned the "image" vector is replaced by "image_pixels": uint8 [B, S, S, 3]
(resized and centre-cropped, normalised inside `encode` by `image_preprocessing`; rows of items without an image
are zeros, masked by "present"). M follows `modalities`; "id" takes no input vector (its presence bit says whether
the item has a trained ID).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.data.images import ImageConfig
from genrec.models import layers
from genrec.models.fusion import VARIANTS, Fusion, FusionConfig
from genrec.models.layers.lora import LoRAConfig, LoRAParam, apply_lora
from genrec.models.text.bert import Bert, BertConfig
from genrec.models.vision.clip import ClipVision, ClipVisionConfig
from genrec.registry import register

ID = "id"
MODALITIES = ("text", "image", "genre", ID)
TOWERS = ("frozen", "lora")
TOWER_TARGETS = ("q", "k", "v", "o", "up", "down")  # the BERT layer's linear layers (attention, MLP)
TUNABLE = ("text", "image")
CLIP_NAMES = {"up": "fc1", "down": "fc2"}  # the same MLP layers in the CLIP layer


@dataclasses.dataclass(frozen=True)
class MMEncConfig:
  modalities: tuple[str, ...] = ("text", "genre")
  input_dims: tuple[int, ...] = ()  # width of each non-id modality's frozen tower output; () → from the data
  num_items: int = 0  # 0: from the dataset (the "id" modality's table)
  id_dim: int = 32
  id_dropout: float = 0.0  # training: drop an item's "id" modality with this probability (when it has
  # another), so items without a trained ID (cold, added) map near their peers
  fusion: str = "gated"  # concat | gated | xattn | moe
  dim: int = 64
  hidden_dim: int = 128
  num_heads: int = 2
  num_experts: int = 4
  dropout: float = 0.1
  temperature: float = 0.07
  normalize: bool = True
  window: int = 3  # training pairs: items at most `window` apart in a training sequence
  image_encoder: str = "random:tiny"  # random:tiny | random:vit-b-32 (seeded, untrained) | a HF CLIP folder
  towers: str = "frozen"  # frozen | lora (towers tuned inside the forward pass)
  tower_lora_towers: tuple[str, ...] = ("text",)  # towers=lora: which towers get adapters (of TUNABLE)
  tower_lora_rank: int = 8
  tower_lora_alpha: float = 16.0
  tower_lora_targets: tuple[str, ...] = ("q", "k", "v", "o")  # of TOWER_TARGETS
  text_max_length: int = 64  # towers=lora: tokens kept per item text
  text_tower: BertConfig = BertConfig()  # towers=lora: set from the text tower's config.json by the task
  image_tower: ClipVisionConfig = ClipVisionConfig()  # lora on "image": set from image_encoder by the task
  image_preprocessing: ImageConfig = ImageConfig()  # lora on "image": its pixel normalisation, ditto

  task: str = "item_contrastive"

  @property
  def inputs(self) -> tuple[str, ...]:
    """The modalities that read a tower's output (all but "id")."""
    return tuple(m for m in self.modalities if m != ID)

  @property
  def lora_towers(self) -> tuple[str, ...]:
    """The towers tuned inside the forward pass (none when towers=frozen)."""
    return self.tower_lora_towers if self.towers == "lora" else ()

  def resolve(self, data, data_cfg) -> MMEncConfig:
    """Sizes the ID table and the input widths from the task's feature table; a width that disagrees with
    the configured one is an error naming the modality."""
    del data_cfg
    cfg = dataclasses.replace(self, num_items=self.num_items or data.num_items)
    for field in ("text_tower", "image_tower", "image_preprocessing"):
      if field.split("_")[0] in self.lora_towers and getattr(data, field, None) is not None:
        cfg = dataclasses.replace(cfg, **{field: getattr(data, field)})
    widths = getattr(data, "widths", None)
    if widths is None:
      return cfg
    if not cfg.input_dims:
      return dataclasses.replace(cfg, input_dims=tuple(widths[m] for m in cfg.inputs))
    cfg.validate()
    for m, d in zip(cfg.inputs, cfg.input_dims):
      if widths[m] != d:
        raise ValueError(
          f"modality {m!r}: the tower outputs of {data.name} have width {widths[m]}, but "
          f"model.input_dims gives {d}; set model.input_dims to the towers' widths (or () to "
          "take them from the data)"
        )
    return cfg

  def validate(self) -> None:
    unknown = [m for m in self.modalities if m not in MODALITIES]
    if unknown or not self.modalities or len(set(self.modalities)) != len(self.modalities):
      raise ValueError(f"model.modalities={self.modalities}: need distinct names from {MODALITIES}")
    if len(self.input_dims) != len(self.inputs):
      raise ValueError(
        f"model.input_dims={self.input_dims} gives {len(self.input_dims)} widths for the "
        f"{len(self.inputs)} input modalities {self.inputs}"
      )
    if self.fusion not in VARIANTS:
      raise ValueError(f"model.fusion={self.fusion!r} is not one of {VARIANTS}")
    if ID in self.modalities and (self.num_items < 1 or self.id_dim < 1):
      raise ValueError(f"the 'id' modality needs num_items and id_dim >= 1 (got {self.num_items}, {self.id_dim})")
    if not 0.0 <= self.id_dropout < 1.0 or (self.id_dropout and ID not in self.modalities):
      raise ValueError(f"model.id_dropout={self.id_dropout}: needs a value in [0, 1) and the 'id' modality")
    if self.temperature <= 0 or self.window < 1:
      raise ValueError(f"model.temperature must be > 0 and model.window >= 1, got {self.temperature}, {self.window}")
    if self.towers not in TOWERS:
      raise ValueError(f"model.towers={self.towers!r} is not one of {TOWERS}")
    if self.towers == "lora":
      self._validate_lora()

  def _validate_lora(self) -> None:
    towers = self.tower_lora_towers
    unknown = [t for t in towers if t not in TUNABLE]
    if unknown or not towers or len(set(towers)) != len(towers):
      raise ValueError(f"model.tower_lora_towers={towers}: need distinct tower names from {TUNABLE}")
    for tower in towers:
      if tower not in self.modalities:
        raise ValueError(
          f"model.towers='lora' tunes the {tower} tower, but model.modalities={self.modalities} has "
          f"no {tower!r}; add it, drop it from model.tower_lora_towers or set model.towers=frozen"
        )
    if self.tower_lora_rank < 1 or self.tower_lora_alpha <= 0:
      raise ValueError(
        f"model.tower_lora_rank must be >= 1 and model.tower_lora_alpha > 0, got "
        f"{self.tower_lora_rank}, {self.tower_lora_alpha}"
      )
    unknown = [t for t in self.tower_lora_targets if t not in TOWER_TARGETS]
    owner = " and ".join(towers) + (" towers'" if len(towers) > 1 else " tower's")
    if unknown or not self.tower_lora_targets:
      raise ValueError(
        f"model.tower_lora_targets={self.tower_lora_targets}: {unknown or 'none'} not among the "
        f"{owner} linear layers {TOWER_TARGETS} (attention q, k, v, o; MLP up, down)"
      )
    if "text" in towers and not 0 < self.text_max_length <= self.text_tower.max_position:
      raise ValueError(
        f"model.text_max_length={self.text_max_length} must be in [1, {self.text_tower.max_position}]"
        " (the text tower's max_position)"
      )

  def tower_lora(self, tower: str = "text") -> LoRAConfig:
    """The adapters of `tower`: tower_lora_targets in its own layer names."""
    names = CLIP_NAMES if tower == "image" else {}
    return LoRAConfig(
      rank=self.tower_lora_rank,
      alpha=self.tower_lora_alpha,
      targets=tuple(names.get(t, t) for t in self.tower_lora_targets),
    )

  @property
  def fusion_config(self) -> FusionConfig:
    return FusionConfig(
      variant=self.fusion,
      dim=self.dim,
      hidden_dim=self.hidden_dim,
      num_heads=self.num_heads,
      num_experts=self.num_experts,
      dropout=self.dropout,
    )


@register("mmenc", MMEncConfig)
class MMEnc(nnx.Module):
  def __init__(self, cfg: MMEncConfig, *, rngs: nnx.Rngs):
    cfg.validate()
    self.cfg = cfg
    dims = dict(zip(cfg.inputs, cfg.input_dims))
    if ID in cfg.modalities:
      self.item_emb = layers.Embed(cfg.num_items + 1, cfg.id_dim, ("item", "embed"), rngs=rngs, stddev=0.02)
      dims = {m: (cfg.id_dim if m == ID else dims[m]) for m in cfg.modalities}
    self.fuser = Fusion(cfg.fusion_config, dims, rngs=rngs)
    if cfg.id_dropout:
      self.id_drop = nnx.Dropout(cfg.id_dropout, rngs=rngs)
    # Built after the fuser (text first), so the fuser's and the text tower's initial parameters do not depend on
    # which towers are tuned.
    self.text_tower = _lora_tower(cfg, "text", Bert, cfg.text_tower, rngs)
    self.image_tower = _lora_tower(cfg, "image", ClipVision, cfg.image_tower, rngs)

  @staticmethod
  def trainable(cfg: MMEncConfig):
    """What the optimizer updates: every parameter, except a LoRA-tuned tower's base weights."""
    if not cfg.lora_towers:
      return nnx.Param
    bases = nnx.Any(*(nnx.PathContains(f"{t}_tower") for t in cfg.lora_towers))
    return nnx.Any(LoRAParam, nnx.All(nnx.Param, nnx.Not(bases)))

  def encode(self, batch) -> jax.Array:
    """Item vectors [B, dim] from one row of features per item."""
    tuned = {}
    if self.text_tower is not None:
      tuned["text"] = self.text_tower.encode(batch["text_ids"], batch["text_valid"])
    if self.image_tower is not None:
      tuned["image"] = self.image_tower.encode(self._normalize(batch["image_pixels"]))
    inputs = {m: tuned[m] if m in tuned else batch[m] for m in self.cfg.inputs}
    if ID in self.cfg.modalities:
      inputs[ID] = self.item_emb(batch["item"])
    out_BxD = self.fuser(inputs, batch["present"])
    if self.cfg.normalize:
      out_BxD = out_BxD * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(out_BxD), -1, keepdims=True), 1e-12))
    return out_BxD

  def _drop_id(self, present_BxM):
    """Training: each row's "id" presence is cleared with probability id_dropout where another modality is
    present (an identity in eval mode)."""
    col, present_BxM = self.cfg.modalities.index(ID), jnp.asarray(present_BxM)
    others = jnp.delete(present_BxM, col, axis=1, assume_unique_indices=True).any(axis=1)
    keep_B = self.id_drop(jnp.ones(present_BxM.shape[:1], jnp.float32)) > 0
    return present_BxM.at[:, col].set(present_BxM[:, col] & (keep_B | ~others))

  def _normalize(self, rgb_BxSxSx3):
    """uint8 → float32 (x / 255 - mean) / std, as `genrec.data.images.normalize` on the host."""
    pre = self.cfg.image_preprocessing
    mean_1x1x1x3 = jnp.asarray(pre.mean, jnp.float32).reshape(1, 1, 1, 3)
    std_1x1x1x3 = jnp.asarray(pre.std, jnp.float32).reshape(1, 1, 1, 3)
    return (rgb_BxSxSx3.astype(jnp.float32) / 255.0 - mean_1x1x1x3) / std_1x1x1x3

  def loss(self, batch):
    pairs = batch["item"].shape[0]
    flat = {k: v.reshape(pairs * 2, *v.shape[2:]) for k, v in batch.items()}
    if self.cfg.id_dropout:
      flat["present"] = self._drop_id(flat["present"])
    z_Bx2xD = self.encode(flat).astype(jnp.float32).reshape(pairs, 2, -1)
    anchor_BxD, positive_BxD = z_Bx2xD[:, 0], z_Bx2xD[:, 1]
    logits_BxB = anchor_BxD @ positive_BxD.T / self.cfg.temperature
    item_a, item_p = batch["item"][:, 0], batch["item"][:, 1]
    eye = jnp.eye(pairs, dtype=bool)
    # Another row holding the same item as this row's positive (or anchor) is no negative.
    same = (item_p[None, :] == item_p[:, None]) | (item_p[None, :] == item_a[:, None])
    mask_a = eye | ~same
    same_t = (item_a[None, :] == item_a[:, None]) | (item_a[None, :] == item_p[:, None])
    mask_p = eye | ~same_t
    masked_BxB = jnp.where(mask_a, logits_BxB, -jnp.inf)
    loss = 0.5 * (_cross_entropy_diag(masked_BxB) + _cross_entropy_diag(jnp.where(mask_p, logits_BxB.T, -jnp.inf)))
    hit = jnp.argmax(masked_BxB, axis=-1) == jnp.arange(pairs)
    return loss, {"loss": loss, "in_batch_acc": hit.astype(jnp.float32).mean()}


def _lora_tower(cfg: MMEncConfig, name: str, cls, tower_cfg, rngs: nnx.Rngs):
  """The tower `name` with adapters when LoRA tunes it, else None."""
  if name not in cfg.lora_towers:
    return None
  tower = cls(tower_cfg, rngs=rngs)
  apply_lora(tower, cfg.tower_lora(name), rngs=rngs)
  return tower


def _cross_entropy_diag(logits_BxB):
  """Mean over rows of −log softmax(row)[row index]."""
  return jnp.mean(jax.nn.logsumexp(logits_BxB, axis=-1) - jnp.diagonal(logits_BxB))
