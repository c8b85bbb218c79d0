"""WordPiece tokenizers trained offline, and fixed-length encoding to tensors.

Special tokens (fixed ids): ``[PAD]``=0, ``[UNK]``=1, ``[CLS]``=2, ``[SEP]``=3,
``[MASK]``=4.  Single texts encode as ``[CLS] a [SEP]``, pairs as
``[CLS] a [SEP] b [SEP]`` (type ids 0 for the first part, 1 for ``b [SEP]``),
truncated (longest part first) and padded with ``[PAD]`` to exactly
``max_len``.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from contextlib import contextmanager
from heapq import heapify, heappop, heappush
from typing import Iterable, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

__all__ = [
    "SPECIAL_TOKENS",
    "PAD_ID",
    "UNK_ID",
    "CLS_ID",
    "SEP_ID",
    "MASK_ID",
    "train_wordpiece",
    "encode",
    "token_lengths",
    "choose_max_len",
]

# Bump when train_wordpiece changes its output; part of every task cache recipe.
TOKENIZER_RECIPE = "wordpiece-detbpe-1"

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)


def train_wordpiece(
    texts: Iterable[str],
    vocab_size: int = 8000,
    *,
    min_frequency: int = 2,
    lowercase: bool = True,
) -> Tokenizer:
    """Train a BERT-style WordPiece tokenizer on ``texts`` (offline)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    texts = [t for t in texts if isinstance(t, str)]
    counts: Counter[str] = Counter()
    norm, pre = tok.normalizer, tok.pre_tokenizer
    for t in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)))
    vocab = _bpe_vocab(counts, int(vocab_size), int(min_frequency))
    tok.model = models.WordPiece(
        vocab={w: i for i, w in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100
    )
    for i, s in enumerate(SPECIAL_TOKENS):  # the layout the rest of the code relies on
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)],
    )
    return tok


def _bpe_vocab(word_counts: Counter, vocab_size: int, min_frequency: int,
               prefix: str = "##", max_word_chars: int = 100) -> list[str]:
    """WordPiece vocabulary learned with byte-pair merges, deterministically.

    Same recipe as ``tokenizers``' WordPieceTrainer (characters, ``##``
    continuation pieces, most frequent pair merged first) but ties are broken
    by the pair's text instead of hash-map order, so the vocabulary is
    identical across runs and machines.
    """
    words = sorted(w for w in word_counts if 0 < len(w) <= max_word_chars)
    syms = [[w[0]] + [prefix + c for c in w[1:]] for w in words]
    freq = [word_counts[w] for w in words]
    vocab = list(SPECIAL_TOKENS)
    seen = set(vocab)
    for s in sorted({s for ws in syms for s in ws}):
        if s not in seen:
            vocab.append(s)
            seen.add(s)
    pair_counts: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, ws in enumerate(syms):
        c = freq[i]
        for p in zip(ws, ws[1:]):
            pair_counts[p] += c
            where[p].add(i)
    # A pair of existing symbols only loses occurrences, so pairs below
    # min_frequency never need a heap entry.  Every pair whose count changes is
    # re-pushed, so an entry whose count is not current is simply dropped.
    heap = [(-c, a, b) for (a, b), c in pair_counts.items() if c >= min_frequency]
    heapify(heap)
    plen = len(prefix)
    while len(vocab) < vocab_size and heap:
        negc, a, b = heappop(heap)
        c = pair_counts.get((a, b), 0)
        if c != -negc:  # stale entry
            continue
        new = a + (b[plen:] if b.startswith(prefix) else b)
        if new not in seen:
            vocab.append(new)
            seen.add(new)
        changed = set()
        for i in where.pop((a, b), ()):
            ws = syms[i]
            cnt = freq[i]
            out, j, n = [], 0, len(ws)
            gone: set[int] = set()  # indices k of old pairs (ws[k], ws[k+1]) that vanish
            born: list[int] = []    # positions of new symbols in out
            while j < n:
                if j < n - 1 and ws[j] == a and ws[j + 1] == b:
                    gone.update((j - 1, j, j + 1))
                    born.append(len(out))
                    out.append(new)
                    j += 2
                else:
                    out.append(ws[j])
                    j += 1
            if not born:
                continue
            for k in gone:
                if 0 <= k < n - 1:
                    p = (ws[k], ws[k + 1])
                    pair_counts[p] -= cnt
                    changed.add(p)
            m = len(out)
            fresh = set()
            for pos in born:
                fresh.update((pos - 1, pos))
            for k in fresh:
                if 0 <= k < m - 1:
                    p = (out[k], out[k + 1])
                    pair_counts[p] += cnt
                    where[p].add(i)
                    changed.add(p)
            syms[i] = out
        pair_counts.pop((a, b), None)
        for p in changed:
            c2 = pair_counts.get(p, 0)
            if c2 >= min_frequency and p != (a, b):
                heappush(heap, (-c2, p[0], p[1]))
    return vocab


@contextmanager
def _configured(tokenizer: Tokenizer, max_len: int | None, pad: bool):
    """Temporarily set truncation/padding on ``tokenizer``; restores the caller's settings."""
    old_trunc, old_pad = tokenizer.truncation, tokenizer.padding
    try:
        if max_len is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(max_length=max_len, strategy="longest_first")
        if pad:
            tokenizer.enable_padding(length=max_len, pad_id=PAD_ID, pad_token="[PAD]", pad_type_id=0)
        else:
            tokenizer.no_padding()
        yield tokenizer
    finally:
        if old_trunc is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(**old_trunc)
        if old_pad is None:
            tokenizer.no_padding()
        else:
            tokenizer.enable_padding(**old_pad)


def _as_list(texts: Sequence[str] | Iterable[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a sequence of strings, not one string")
    out = []
    for t in texts:
        if t is None or (isinstance(t, float) and math.isnan(t)):
            t = ""
        out.append(str(t))
    return out


def encode(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    texts_b: Sequence[str] | None = None,
    max_len: int | None = None,
    *,
    return_token_type_ids: bool = False,
):
    """Encode to ``(input_ids LongTensor[N, max_len], attention_mask BoolTensor[N, max_len])``.

    With ``return_token_type_ids=True`` a third LongTensor (0 = first segment,
    1 = second) is returned as well.  ``max_len`` is required.
    """
    if max_len is None:
        raise TypeError("encode() needs max_len")
    max_len = int(max_len)
    if max_len < 3:
        raise ValueError("max_len must be at least 3 ([CLS] x [SEP])")
    a = _as_list(texts, "texts")
    b = None
    if texts_b is not None:
        b = _as_list(texts_b, "texts_b")
        if len(b) != len(a):
            raise ValueError(f"texts ({len(a)}) and texts_b ({len(b)}) differ in length")
    with _configured(tokenizer, max_len, pad=True) as tok:
        encs = tok.encode_batch(list(zip(a, b)) if b is not None else a)
    shape = (len(encs), max_len)
    ids = np.array([e.ids for e in encs], dtype=np.int64).reshape(shape)
    mask = np.array([e.attention_mask for e in encs], dtype=np.bool_).reshape(shape)
    out = (torch.from_numpy(ids), torch.from_numpy(mask))
    if return_token_type_ids:
        types = np.array([e.type_ids for e in encs], dtype=np.int64).reshape(shape)
        out = out + (torch.from_numpy(types),)
    return out


def token_lengths(
    tokenizer: Tokenizer, texts: Sequence[str], texts_b: Sequence[str] | None = None
) -> np.ndarray:
    """Untruncated lengths including ``[CLS]``/``[SEP]`` tokens."""
    a = _as_list(texts, "texts")
    with _configured(tokenizer, None, pad=False) as tok:
        if texts_b is not None:
            encs = tok.encode_batch(list(zip(a, _as_list(texts_b, "texts_b"))))
        else:
            encs = tok.encode_batch(a)
    return np.array([len(e.ids) for e in encs], dtype=np.int64)


def choose_max_len(
    lengths: Sequence[int] | np.ndarray,
    percentile: float = 95.0,
    multiple: int = 8,
    cap: int = 256,
    floor: int = 16,
) -> int:
    """``percentile`` of ``lengths`` rounded up to a multiple of ``multiple``,
    clipped to ``[floor, cap]``."""
    arr = np.asarray(lengths)
    if arr.size == 0:
        return floor
    p = float(np.percentile(arr, percentile, method="higher"))
    m = int(math.ceil(p / multiple) * multiple)
    return int(max(floor, min(cap, m)))
