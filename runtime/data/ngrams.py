"""Word n-gram decontamination and MinHash-LSH near-duplicate detection, fast enough for 100K prompts.

What:
- `NgramIndex(n, items).first_matches(texts)`: for each text, the first benchmark item it shares a
  word n-gram with (which benchmark, which item, the n-gram), or None. A text and a benchmark item
  both shorter than n words match when equal up to spacing, case and final punctuation.
- `near_duplicates(texts, threshold, num_perm, shingle)`: for each text, the index of an earlier
  kept text whose estimated Jaccard similarity is at least `threshold`, or None.
Both compare *words* (lower case; ASCII punctuation separates words like white space does), so
spacing, punctuation and case never hide a match; near-dup also maps every digit run to `0`, so a
copy with new numbers is still a copy.

Why: the paper decontaminates with 9-grams (math) and 14-grams (code) against its evaluation sets,
and deduplicates ~1M raw problems; a per-prompt Python loop over n-gram tuples is the bottleneck.

How: no Python call per word. Texts (16K at a time) are joined into one string, folded (lower
case, punctuation and white space to " ") and viewed as a byte array; a cumulative sum gives the
polynomial hash of every prefix, so every word's hash is a difference of two prefix hashes shifted
back by the inverse of the (odd) base modulo 2^64. A rolling hash over n word hashes gives every
n-gram's hash in n vectorised steps; windows that cross from one text into the next are dropped.
Decontamination looks each n-gram hash up in a one-bit-per-hash bitmap, then with `searchsorted` in
the benchmark's sorted hashes, and confirms the few hits exactly against the benchmark's n-gram
table of words (a hash collision can never drop a prompt). Near-dup hashes shingles the same way
(numbers folded to 0 first), computes all MinHash signatures with multiply-shift hashing in chunked
numpy, and indexes them in datasketch's `MinHashLSH` (bands and rows chosen by datasketch for the
threshold); a candidate counts when the signatures agree on at least `threshold` of the
permutations. The first of a group of near-duplicates is kept.
`reference_*` are the straightforward implementations `perf/curate.py` compares against.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# ASCII punctuation and every kind of white space become a plain space (then `split` = split on " ")
_FOLD = str.maketrans({c: " " for c in string.punctuation + "".join(chr(i) for i in range(0x3001)
                                                                      if chr(i).isspace())})
_DIGITS = re.compile(r"\d+")
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio): a good polynomial base
SEP = "\x00"  # between texts in one joined string; never a word of a text (removed from texts first)
CHUNK = 16_384  # texts hashed at a time: bounds memory to ~100 MB of arrays


def words(text: str) -> list[str]:
    """Lower-cased words: ASCII punctuation is a separator, like white space."""
    return text.lower().translate(_FOLD).split()


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
        self.grams: dict[tuple[str, ...], tuple[str, str]] = {}
        self.short: dict[str, tuple[str, str]] = {}  # items shorter than n words, by `short_key`
        for bench, item, text in items:
            w = words(text)
            if 0 < len(w) < n:
                self.short.setdefault(short_key(text), (bench, item))
            for i in range(len(w) - n + 1):
                self.grams.setdefault(tuple(w[i:i + n]), (bench, item))
        self.hashes = np.unique(np.concatenate([np.zeros(0, np.uint64)] + [
            h for h, _ in _ngram_hashes([t for _, _, t in items], n)]))
        bits = max(16, int(np.ceil(np.log2(max(len(self.hashes), 1) * 64))))  # ~1.5% false positives
        self.mask = np.uint64((1 << bits) - 1)
        self.bitmap = np.zeros(1 << bits, dtype=bool)
        self.bitmap[self.hashes & self.mask] = True

    def first_matches(self, texts: Sequence[str]) -> list[Match | None]:
        """For each text, its first n-gram (or whole-text) match against the benchmarks, or None."""
        out: list[Match | None] = [None] * len(texts)
        offset = 0
        for h, (starts, lengths) in _ngram_hashes(texts, self.n, with_docs=True):
            count = len(lengths)
            if self.short:
                for doc in np.flatnonzero(lengths < self.n):
                    found = self.short.get(short_key(texts[offset + doc]))
                    if found is not None:
                        out[offset + doc] = Match(found[0], found[1], texts[offset + doc])
            if len(self.hashes):
                candidate = self.bitmap[h & self.mask]  # cheap pre-check: 1 bit per hash
                pos = np.flatnonzero(candidate)
                where = np.minimum(np.searchsorted(self.hashes, h[pos]), len(self.hashes) - 1)
                docs = np.unique(np.searchsorted(starts, pos[self.hashes[where] == h[pos]], side="right") - 1)
                for doc in docs:  # few: confirm exactly, so a hash collision never drops a prompt
                    out[offset + doc] = out[offset + doc] or self._confirm(texts[offset + doc])
            offset += count
        return out

    def _confirm(self, text: str) -> Match | None:
        w = words(text)
        for i in range(len(w) - self.n + 1):
            found = self.grams.get(tuple(w[i:i + self.n]))
            if found is not None:
                return Match(found[0], found[1], " ".join(w[i:i + self.n]))
        return None


# Word hashing without a Python call per word: the texts' bytes in one array, a polynomial hash of
# every prefix (cumulative sum), and each word's hash as the difference of two prefix hashes,
# shifted back to position 0 by the inverse of the base (odd, so invertible modulo 2^64).
_BASE = np.uint64(0x100000001B3)
_BASE_INV = np.uint64(pow(int(_BASE), -1, 2**64))


_POWERS: dict[int, np.ndarray] = {}


def _powers(base: np.uint64, size: int) -> np.ndarray:
    """base^0 .. base^(size-1) modulo 2^64, kept for the next chunk (they only depend on the size)."""
    have = _POWERS.get(int(base))
    if have is None or len(have) < size:
        have = np.ones(max(size, 1 << 20), dtype=np.uint64)
        have[1:] = np.cumprod(np.full(len(have) - 1, base, dtype=np.uint64))
        _POWERS[int(base)] = have
    return have[:size]


def _word_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every word of the texts, SEP after each text included; True where the word is SEP)."""
    joined = "".join(f"{t.replace(SEP, ' ') if SEP in t else t} {SEP} " for t in texts)
    data = np.frombuffer(joined.lower().translate(_FOLD).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    space = data == 32
    starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
    ends = np.flatnonzero(~space & np.concatenate((space[1:], [True])))  # last byte of each word
    prefix = np.cumsum((data.astype(np.uint64) + np.uint64(1)) * _powers(_BASE, len(data)))
    before = np.where(starts > 0, prefix[np.maximum(starts - 1, 0)], np.uint64(0))
    hashes = (prefix[ends] - before) * _powers(_BASE_INV, len(data))[starts]
    return hashes, data[starts] == 0


def _ngram_hashes(texts: Sequence[str], n: int, with_docs: bool = False):
    """Per chunk of texts: (hashes of the n-grams inside texts, and with `with_docs` (index of each
    text's first n-gram, each text's length in words))."""
    for begin in range(0, len(texts), CHUNK):
        hashes, sep = _word_hashes(texts[begin:begin + CHUNK])
        ends = np.flatnonzero(sep)
        lengths = np.diff(np.concatenate(([-1], ends))) - 1
        inside = _windows_without_zero(~sep, n) if len(hashes) >= n else np.zeros(0, bool)
        h = _window_hashes(hashes, n)[inside]
        if not with_docs:
            yield h, None
            continue
        # texts with fewer than n words own no window; count each text's windows to place them
        counts = np.maximum(lengths - n + 1, 0)
        yield h, (np.concatenate(([0], np.cumsum(counts)[:-1])), lengths)


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
    """(shingle hashes of all texts concatenated, start offset of each text's slice). Numbers are
    folded to 0 first; a text shorter than k words is one shingle (its words, padded)."""
    parts, offsets, total = [], [], 0
    for begin in range(0, len(texts), CHUNK):
        hashes, sep = _word_hashes([_DIGITS.sub("0", t) for t in texts[begin:begin + CHUNK]])
        ends = np.flatnonzero(sep)
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts
        counts = np.maximum(lengths - k + 1, 1)
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        out = np.empty(int(counts.sum()), dtype=np.uint64)
        short = np.flatnonzero(lengths < k)
        is_short = np.zeros(len(out), dtype=bool)
        is_short[first[short]] = True
        out[is_short] = [_poly_hash(hashes[starts[d]:ends[d]].tolist(), k) for d in short]
        if len(hashes) >= k:
            out[~is_short] = _window_hashes(hashes, k)[_windows_without_zero(~sep, k)]
        parts.append(out)
        offsets.append(first + total)
        total += len(out)
    return np.concatenate(parts), np.concatenate(offsets)


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
