"""Prompts of the LLM-CF models (TALLRec, CoLLM, LLaRA-style), built as token ids on the host.

    builder = PromptBuilder(tokenizer, titles, template="collm", max_len=128)
    arrays = builder.build(user_B, item_B, history_BxH)      # one row per (user, target item) example

Templates (`TEXT`; t1, t2, ... = titles of the user's liked history items, oldest first; t = the target's;
each placeholder is one token):
  tallrec  "User Preference: t1, t2, ... Whether the user will like the target movie t? Answer:"
  collm    "User Preference: t1 <ItemID>, t2 <ItemID>, ... User feature: <UserID>. Whether ... movie t
           <TargetItemID>? Answer:"
  llara    the same without the user sentence (each <ItemID>/<TargetItemID> is the item's hybrid token)
The model replaces the embeddings of the placeholder tokens by projected CF embeddings: `cf_slot` says
which kind a position is (SLOT_TEXT, SLOT_USER, SLOT_ITEM) and `cf_index` the user index or item id. The
answer is read from the next-token logits after the last real token ("Answer:"): " Yes" vs " No".

Rows are right-padded to `max_len`, the context window. A prompt that does not fit drops its OLDEST history
items first; the target is never cut (titles are capped at `max_title_tokens`, the same for every item, and a
window too short for a prompt with no history at all is an error). `kept(history)` says how many history
items each row keeps, so callers count the truncated examples.

Tokenizers: a Hugging Face `tokenizers.Tokenizer` (a real model's tokenizer.json), or for tiny random LLMs
`word_tokenizer(texts)`, a deterministic word-level one over the dataset's titles (no download).
"""

from __future__ import annotations

import re

import numpy as np

from genrec import extras
from genrec.config import ConfigError
from genrec.models.llm.hf_import import check_special_tokens

TEMPLATES = ("tallrec", "collm", "llara")
SLOT_TEXT, SLOT_USER, SLOT_ITEM = 0, 1, 2
PAD = "<|endoftext|>"  # Qwen2's pad token; the built-in tokenizer's too
PLACEHOLDERS = ("<UserID>", "<ItemID>", "<TargetItemID>")
HEAD, USER, QUESTION, TAIL = (
  "User Preference:",
  " User feature:",
  " Whether the user will like the target movie",
  "? Answer:",
)
TEXT = {
  "tallrec": f"{HEAD} t1, t2, ...{QUESTION} t{TAIL}",
  "collm": f"{HEAD} t1 <ItemID>, t2 <ItemID>, ...{USER} <UserID>.{QUESTION} t <TargetItemID>{TAIL}",
  "llara": f"{HEAD} t1 <ItemID>, t2 <ItemID>, ...{QUESTION} t <TargetItemID>{TAIL}",
}
WORDS = re.compile(r"\w+|[^\w\s]+")  # what tokenizers' Whitespace pre-tokenizer splits on


def word_tokenizer(texts) -> tokenizers.Tokenizer:  # noqa: F821
  """A word-level `tokenizers.Tokenizer` whose vocabulary is PAD, <unk>, the placeholders, then every word of
  the templates, the answers and `texts`, sorted: the same texts give the same ids."""
  tok = extras.need("tokenizers", "prompt tokenizer")
  Tokenizer, models, pre_tokenizers = tok.Tokenizer, tok.models, tok.pre_tokenizers

  words = set()
  for text in [HEAD, USER, QUESTION, TAIL, ".", ",", "Yes", "No", *texts]:
    words.update(WORDS.findall(text))
  vocab = {tok: i for i, tok in enumerate([PAD, "<unk>", *PLACEHOLDERS, *sorted(words)])}
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  return tok


class PromptBuilder:
  """Token ids of every prompt of one template over one catalogue (`titles[i]` = item id i's title)."""

  def __init__(
    self,
    tokenizer,
    titles: list[str],
    *,
    template: str,
    max_len: int,
    max_title_tokens: int = 16,
    pad_token: str = PAD,
    answer_words: tuple[str, str] = ("Yes", "No"),
    bos_token: str = "",
    source: str = "tokenizer",
  ):
    if template not in TEMPLATES:
      raise ConfigError(f"prompt template {template!r} is not one of {TEMPLATES}")
    if max_title_tokens < 1:
      raise ConfigError(f"model.max_title_tokens={max_title_tokens}: titles need at least one token")
    self.template, self.max_len = template, max_len
    self.vocab_size = tokenizer.get_vocab_size()
    special = check_special_tokens(tokenizer, [pad_token] + ([bos_token] if bos_token else []), source)
    self.pad_id = special[pad_token]
    encode = lambda text: np.asarray(tokenizer.encode(text, add_special_tokens=False).ids, np.int32)
    self.answer_ids = []
    for word in answer_words:
      ids = encode(" " + word)
      if len(ids) != 1:
        raise ConfigError(
          f"{source}: the answer {word!r} is {len(ids)} tokens ({ids.tolist()}) after a space; "
          "P(answer) needs one token each: choose other model.answer_words"
        )
      self.answer_ids.append(int(ids[0]))
    # Placeholder ids only need to be real tokens: their embeddings are replaced. A tokenizer without them
    # (any real one) uses the pad token, which the valid mask does not hide here.
    found = [tokenizer.token_to_id(p) for p in PLACEHOLDERS]
    self.user_id, self.item_id, self.target_id = (self.pad_id if i is None else i for i in found)
    self.titles = [encode(" " + t)[:max_title_tokens] for t in titles]
    self.sep = encode(",")
    self.head = np.concatenate([[special[bos_token]] if bos_token else [], encode(HEAD)]).astype(np.int32)
    self.user, self.dot = encode(USER), encode(".")
    self.question, self.tail = encode(QUESTION), encode(TAIL)
    # History item i's segment: separator (all but the first kept) + title + [ItemID].
    self.item_len = np.asarray([len(t) for t in self.titles], np.int64) + self.with_slots
    self.fixed = len(self.head) + len(self.question) + len(self.tail)
    if template == "collm":
      self.fixed += len(self.user) + 1 + len(self.dot)
    longest = int(self.item_len.max()) if len(self.item_len) > 1 else 0
    if self.fixed + longest > max_len:
      raise ConfigError(
        f"model.max_prompt_len={max_len} is too short: a {template} prompt with no history "
        f"needs up to {self.fixed + longest} tokens ({self.fixed} of template, {longest} for the "
        "longest target title); raise it or lower model.max_title_tokens"
      )

  @property
  def with_slots(self) -> bool:
    return self.template != "tallrec"

  def kept(self, item_M, history_MxH) -> np.ndarray:
    """How many of each row's history items fit beside its target (the newest ones): int64 [M]."""
    history_MxH = np.asarray(history_MxH)
    real_MxH = history_MxH > 0
    seg_MxH = np.where(real_MxH, self.item_len[history_MxH] + len(self.sep), 0)
    newest_first_MxH = np.cumsum(seg_MxH[:, ::-1], axis=1) - len(self.sep)  # the newest k items and k-1 seps
    count_MxH = np.cumsum(real_MxH[:, ::-1], axis=1)
    budget_Mx1 = (self.max_len - self.fixed - self.item_len[np.asarray(item_M)])[:, None]
    return np.where(newest_first_MxH <= budget_Mx1, count_MxH, 0).max(axis=1, initial=0)

  def build(self, user_B, item_B, history_BxH, hybrid_B=None) -> dict[str, np.ndarray]:
    """{"prompt": int32 [B, L], "prompt_valid": bool [B, L]} (+ "cf_slot", "cf_index" int32 [B, L] for
    templates with placeholders). `hybrid_B` (LLaRA's curriculum): rows where False mark their [I]/[T]
    tokens invalid, so the model sees exactly the text-only prompt (a masked token takes no position)."""
    user_B, item_B, history_BxH = np.asarray(user_B), np.asarray(item_B), np.asarray(history_BxH)
    shape = (len(user_B), self.max_len)
    ids, slot, index = np.full(shape, self.pad_id, np.int32), np.zeros(shape, np.int32), np.zeros(shape, np.int32)
    valid = np.zeros(shape, bool)
    kept_B = self.kept(item_B, history_BxH)
    for r, (user, target, history) in enumerate(zip(user_B, item_B, history_BxH)):
      history = history[history > 0]
      pieces = [(self.head, SLOT_TEXT, 0)]
      for j, item in enumerate(history[len(history) - kept_B[r] :]):
        pieces += ([(self.sep, SLOT_TEXT, 0)] if j else []) + self._item(item, self.item_id)
      if self.template == "collm":
        pieces += [(self.user, SLOT_TEXT, 0), ([self.user_id], SLOT_USER, user), (self.dot, SLOT_TEXT, 0)]
      pieces += [(self.question, SLOT_TEXT, 0), *self._item(target, self.target_id), (self.tail, SLOT_TEXT, 0)]
      pos = 0
      for tokens, kind, ref in pieces:
        end = pos + len(tokens)
        ids[r, pos:end], slot[r, pos:end], index[r, pos:end] = tokens, kind, ref
        pos = end
      valid[r, :pos] = True
    if not self.with_slots:
      return {"prompt": ids, "prompt_valid": valid}
    if hybrid_B is not None:
      valid &= ~((slot == SLOT_ITEM) & ~np.asarray(hybrid_B, bool)[:, None])
    return {"prompt": ids, "prompt_valid": valid, "cf_slot": slot, "cf_index": index}

  def _item(self, item, placeholder: int) -> list:
    """An item's title, then (templates with slots) its placeholder carrying the item id."""
    title = [(self.titles[item], SLOT_TEXT, 0)]
    return title + [([placeholder], SLOT_ITEM, item)] if self.with_slots else title
