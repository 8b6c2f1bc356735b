"""Word n-gram decontamination and MinHash-LSH near-duplicate detection, fast enough for 100K prompts.

What:
- `NgramIndex(n, items).first_matches(texts)`: for each text, the first benchmark item it shares a
  word n-gram with (which benchmark, which item, the n-gram), or None. A text and a benchmark item
  both shorter than n words match when equal up to spacing, case and final punctuation.
- `near_duplicates(texts, threshold, num_perm, shingle)`: for each text, the index of an earlier
  kept text whose estimated Jaccard similarity is at least `threshold`, or None.
Both compare *words* (lower case; ASCII punctuation separates words like spaces do), so spacing,
punctuation and case never hide a match;
near-dup also maps every digit run to `0`, so a copy with new numbers is still a copy.

Why: the paper decontaminates with 9-grams (math) and 14-grams (code) against its evaluation sets,
and deduplicates ~1M raw problems; a per-prompt Python loop over n-gram tuples is the bottleneck.

How: all texts are joined into one string and split once (a C-level pass, with the cyclic GC
paused while millions of small strings are made), and words become integer ids (decontamination:
only words that occur in a benchmark get an id; a text's other words become 0, and no n-gram
holding one can match). A polynomial rolling hash over the id array gives every window's hash in n
vectorised steps; windows holding a 0 or crossing into the next text are dropped; the rest pass a
one-bit-per-hash bitmap, then a `searchsorted` lookup in the sorted benchmark hashes, and the few
hits are confirmed exactly against the benchmark n-gram table (a hash collision never drops a
prompt). Near-dup hashes shingles the same way, computes all MinHash signatures with
multiply-shift hashing in chunked numpy, and indexes them in datasketch's `MinHashLSH` (bands and
rows chosen by datasketch for the threshold); a candidate counts when its signatures agree on at
least `threshold` of the permutations. The first of a group of near-duplicates is kept.
`reference_*` are the straightforward implementations `bench/curate.py` compares against.
"""

from __future__ import annotations

import gc
import re
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_DIGITS = re.compile(r"\d+")
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio): a good polynomial base
SEP = "\x00"  # between texts in one joined string; never a word of a text (removed from texts first)


def words(text: str) -> list[str]:
    """Lower-cased words: ASCII punctuation is a separator, like white space."""
    return text.lower().translate(_PUNCT).split()


@contextmanager
def _no_gc() -> Iterator[None]:
    """Building millions of small strings triggers the cyclic GC over and over (they hold no cycles)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def corpus_words(texts: Sequence[str], numbers_to_zero: bool = False) -> list[str]:
    """The words of all texts in one list, SEP after each text: one C-level pass instead of one per text."""
    joined = "".join(f"{t.replace(SEP, ' ') if SEP in t else t} {SEP} " for t in texts)
    joined = joined.lower().translate(_PUNCT)
    if numbers_to_zero:
        joined = _DIGITS.sub("0", joined)
    with _no_gc():
        return joined.split()


def short_key(text: str) -> str:
    """A text shorter than n words is compared whole, keeping its symbols (`15 - 5` is not `15 / 5`)
    but not its spacing, case or final punctuation."""
    return "".join(text.lower().split()).rstrip(".?!:")


def _window_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash (mod 2^64) of every length-n window of `ids`; len(ids) - n + 1 values."""
    count = len(ids) - n + 1
    h = np.zeros(max(count, 0), dtype=np.uint64)
    if count <= 0:
        return h
    for j in range(n):
        h = h * _MULT + ids[j:j + count]
    return h


def _windows_without_zero(ids: np.ndarray, n: int) -> np.ndarray:
    zeros = np.concatenate(([0], np.cumsum(ids == 0)))
    return (zeros[n:] - zeros[:-n]) == 0


# ----------------------------------------------------------------------------------------------
# decontamination
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    benchmark: str
    item: str  # the benchmark item's id
    ngram: str  # the shared words (or the whole short item)


class NgramIndex:
    """The word n-grams of a set of benchmark items, for fast overlap checks."""

    def __init__(self, n: int, items: Sequence[tuple[str, str, str]]):
        """`items`: (benchmark name, item id, text)."""
        self.n = n
        self.vocab: dict[str, int] = {}
        self.grams: dict[tuple[int, ...], tuple[str, str]] = {}
        self.short: dict[str, tuple[str, str]] = {}  # short items by `short_key`
        for bench, item, text in items:
            ids = tuple(self.vocab.setdefault(w, len(self.vocab) + 1) for w in words(text))
            if 0 < len(ids) < n:
                self.short.setdefault(short_key(text), (bench, item))
            for i in range(len(ids) - n + 1):
                self.grams.setdefault(ids[i:i + n], (bench, item))
        keys = np.array(list(self.grams), dtype=np.uint64).reshape(-1, n)
        self.hashes = np.unique(self._hash_rows(keys))
        bits = max(16, int(np.ceil(np.log2(max(len(self.hashes), 1) * 64))))  # ~1.5% false positives
        self.mask = np.uint64((1 << bits) - 1)
        self.bitmap = np.zeros(1 << bits, dtype=bool)
        self.bitmap[self.hashes & self.mask] = True
        self.words_by_id = {i: w for w, i in self.vocab.items()}

    def _hash_rows(self, keys: np.ndarray) -> np.ndarray:
        h = np.zeros(len(keys), dtype=np.uint64)
        for j in range(self.n):
            h = h * _MULT + keys[:, j]
        return h

    def first_matches(self, texts: Sequence[str]) -> list[Match | None]:
        """For each text, its first n-gram (or whole-text) match against the benchmarks, or None."""
        out: list[Match | None] = [None] * len(texts)
        vocab = dict(self.vocab)
        vocab[SEP] = len(vocab) + 1  # in no n-gram: a window across two texts never matches
        get = vocab.get
        with _no_gc():
            ids = np.array([get(w, 0) for w in corpus_words(texts)], dtype=np.uint64)
        ends = np.nonzero(ids == vocab[SEP])[0]  # ends[i]: position of the SEP after text i
        if self.short:
            self._short_matches(texts, ends, out)
        if len(ids) < self.n or len(self.hashes) == 0:
            return out
        h = _window_hashes(ids, self.n)
        pos = np.nonzero(_windows_without_zero(ids, self.n))[0]  # windows of benchmark words only
        pos = pos[self.bitmap[h[pos] & self.mask]]  # cheap pre-check: 1 bit per hash
        where = np.minimum(np.searchsorted(self.hashes, h[pos]), len(self.hashes) - 1)
        for p in pos[self.hashes[where] == h[pos]]:  # few: confirm exactly, a hash collision never drops a prompt
            doc = int(np.searchsorted(ends, p))
            gram = tuple(int(x) for x in ids[p:p + self.n])
            found = self.grams.get(gram)
            if out[doc] is None and found is not None:
                out[doc] = Match(found[0], found[1], self._text(gram))
        return out

    def _short_matches(self, texts: Sequence[str], ends: np.ndarray, out: list[Match | None]) -> None:
        lengths = np.diff(np.concatenate(([-1], ends))) - 1
        for doc in np.nonzero(lengths < self.n)[0]:
            found = self.short.get(short_key(texts[doc]))
            if found is not None:
                out[doc] = Match(found[0], found[1], texts[doc])

    def _text(self, gram: tuple[int, ...]) -> str:
        return " ".join(self.words_by_id[i] for i in gram)


def reference_decontaminate(n: int, items: Sequence[tuple[str, str, str]], texts: Sequence[str]) -> list[str | None]:
    """The straightforward way (a set of n-gram tuples, one loop per prompt); for the benchmark."""
    grams: dict[tuple[str, ...], str] = {}
    for bench, _item, text in items:
        w = words(text)
        for i in range(len(w) - n + 1):
            grams.setdefault(tuple(w[i:i + n]), bench)
    out: list[str | None] = []
    for text in texts:
        w = words(text)
        out.append(next((grams[g] for g in (tuple(w[i:i + n]) for i in range(len(w) - n + 1)) if g in grams), None))
    return out


# ----------------------------------------------------------------------------------------------
# near duplicates
# ----------------------------------------------------------------------------------------------


def shingle_words(text: str) -> list[str]:
    """Words for near-dup: as `words`, with every number replaced by 0 (re-numbered copies match)."""
    return words(_DIGITS.sub("0", text))


def _poly_hash(values: list[int], n: int) -> int:
    """`_window_hashes` of one window, in Python, for texts shorter than a shingle (padded with 0)."""
    h = 0
    for v in values + [0] * (n - len(values)):
        h = (h * int(_MULT) + v) & 0xFFFFFFFFFFFFFFFF
    return h


def _shingle_hashes(texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hashes of all texts concatenated, start offset of each text's slice). A text shorter
    than k words is one shingle (its words padded)."""
    vocab = {SEP: 0}  # SEP is the only 0, so a window holding a 0 crosses a text boundary
    add = vocab.setdefault
    with _no_gc():
        ids = np.array([add(w, len(vocab)) for w in corpus_words(texts, numbers_to_zero=True)], dtype=np.uint64)
    ends = np.nonzero(ids == 0)[0]
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    counts = np.maximum(lengths - k + 1, 1)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.empty(int(counts.sum()), dtype=np.uint64)
    short = np.nonzero(lengths < k)[0]
    is_short = np.zeros(len(out), dtype=bool)
    is_short[offsets[short]] = True
    out[is_short] = [_poly_hash(ids[starts[d]:ends[d]].tolist(), k) for d in short]
    out[~is_short] = _window_hashes(ids, k)[_windows_without_zero(ids, k)]
    return out, offsets


def minhash_signatures(texts: Sequence[str], num_perm: int, k: int, seed: int = 1) -> np.ndarray:
    """(len(texts), num_perm) MinHash signatures (32-bit values in uint64) with multiply-shift hashing."""
    hashes, offsets = _shingle_hashes(texts, k)
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    sig = np.empty((len(texts), num_perm), dtype=np.uint64)
    per_chunk = max(1, 2**21 // num_perm)  # ~16 MB of shingle x permutation values per step
    doc = 0
    while doc < len(texts):
        end = min(len(texts), doc + max(1, per_chunk // 64))
        lo, hi = offsets[doc], (offsets[end] if end < len(texts) else len(hashes))
        values = (hashes[lo:hi, None] * a[None, :] + b[None, :]) >> np.uint64(32)
        sig[doc:end] = np.minimum.reduceat(values, offsets[doc:end] - lo, axis=0)
        doc = end
    return sig


def near_duplicates(texts: Sequence[str], threshold: float, num_perm: int, shingle: int) -> list[int | None]:
    """For each text, an earlier kept text it nearly duplicates (estimated Jaccard >= threshold), else None."""
    from datasketch import LeanMinHash, MinHashLSH
    sig = minhash_signatures(texts, num_perm, shingle)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    out: list[int | None] = []
    for i in range(len(texts)):
        m = LeanMinHash(seed=1, hashvalues=sig[i], scheme="affine32")  # no per-text permutation setup
        twin = None
        for j in lsh.query(m):
            if np.count_nonzero(sig[i] == sig[j]) >= threshold * num_perm:
                twin = j
                break
        out.append(twin)
        if twin is None:
            lsh.insert(i, m, check_duplication=False)
    return out


def reference_near_duplicates(texts: Sequence[str], threshold: float, num_perm: int, shingle: int) -> list[int | None]:
    """The usual datasketch recipe (one MinHash per text, update_batch, query then insert); for the benchmark."""
    from datasketch import MinHash, MinHashLSH
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[int, MinHash] = {}
    out: list[int | None] = []
    for i, text in enumerate(texts):
        w = shingle_words(text)
        grams = {" ".join(w[j:j + shingle]).encode() for j in range(max(1, len(w) - shingle + 1))}
        m = MinHash(num_perm=num_perm)
        m.update_batch(list(grams))
        twin = next((j for j in lsh.query(m) if m.jaccard(kept[j]) >= threshold), None)
        out.append(twin)
        if twin is None:
            lsh.insert(i, m, check_duplication=False)
            kept[i] = m
    return out
