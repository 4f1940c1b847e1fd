"""Exact global top-k over a list of score arrays, without sorting the N scores.

XLA:CPU sorts 20 M floats in minutes, but counts `key >= t` over them in about
2 ms when the count is first reduced over small blocks (a reduction over a long
axis is rewritten into a tree of reduce-windows that does not fuse the
comparison, which costs ten times more). So the selection is built from
counting passes:

1. A stratified random sample of 64 Ki scores is sorted (cheap). Its order
   statistics predict where the k-th largest key lies.
2. Each counting pass splits the current exact bracket ``[lo, hi)`` of keys at
   5 thresholds taken from the sample (or evenly in key space when the sample
   has nothing left inside the bracket) and counts, per block of 16 scores, the
   elements of each of the 6 sub-intervals, packed 5 bits each in one int32.
   Summing the blocks gives exact counts, hence the sub-interval holding rank k.
   Counts are sums, so sharded scores only need a cross-device sum.
3. Once at most ``_CAP`` scores remain in the bracket, the blocks holding them
   are compacted (bit words + prefix sums over 40 K words + binary search),
   gathered, compacted again to single scores and finished by bisection on the
   key and then on the global index (the tie-break).
4. If the bracket shrinks to a single key value that still holds more than
   ``_CAP`` scores (massive ties, e.g. exact zeros), or the fast loop runs out
   of passes, a slow exact path narrows the bracket in key space alone and
   breaks the tie with per-block counts of the tied key and a prefix search.

All comparisons use integer keys: XLA:CPU treats subnormal floats as zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_BLOCK = 16  # scores per block; a block's count (0..16) fits in 5 bits.
_FIELD_BITS = 5
_FIELDS = 6  # sub-intervals per pass: 6 fields x 5 bits in one int32.
_SAMPLE = 1 << 16  # sample size; sorting it costs about 2 ms.
_CAP = 8192  # candidates (and candidate blocks) the fast finish can hold.
_MAX_FAST_PASSES = 8  # continuous scores need 1 to 3.
_MIN_SAMPLE_IN_BRACKET = 8  # below this, split the bracket evenly in key space.
# Thresholds at the predicted sample position + z * sigma of its estimate.
_SPREAD = (-3.5, -1.2, 0.0, 1.2, 3.5)
_WORD_BITS = 32  # blocks per compaction word.
_INT_MIN = -(2**31)
_KEY_TOP = 0xFF800001  # one above the key of +inf: an empty upper bracket.
_SEED = 0


def ordered_key(x: jax.Array) -> jax.Array:
    """Maps floats to uint32 keys whose unsigned order is the float order.

    Args:
      x: float array (float32, bfloat16 or float16; cast to float32).

    Returns:
      uint32 array of the shape of ``x``: -inf is the lowest number and +inf the
      highest, -0.0 and +0.0 share a key, and every NaN maps to 0, below -inf.
    """
    return lax.bitcast_convert_type(_signed_key(x), jnp.uint32) ^ jnp.uint32(0x80000000)


def _signed_key(x: jax.Array) -> jax.Array:
    """``ordered_key`` shifted into int32 (NaN -> INT_MIN); the pass's compare domain."""
    bits = lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
    sign = bits >> 31  # 0 or -1 (arithmetic shift)
    # Negative floats: flip the magnitude bits so larger magnitude sorts lower,
    # then add one so that -0.0 lands on +0.0.
    key = (bits ^ (sign & 0x7FFFFFFF)) - sign
    return jnp.where((bits & 0x7FFFFFFF) > 0x7F800000, jnp.int32(_INT_MIN), key)


def _to_signed(ukey: jax.Array) -> jax.Array:
    return lax.bitcast_convert_type(ukey ^ jnp.uint32(0x80000000), jnp.int32)


class _Layout(NamedTuple):
    """Static geometry: array i has `blocks[i]` blocks of 16, then a short tail."""

    sizes: tuple[int, ...]
    offsets: tuple[int, ...]  # global flat index of each array's first score
    blocks: tuple[int, ...]
    block_offsets: tuple[int, ...]  # global block index of each array's first block
    total: int
    total_blocks: int


def _layout(sizes: Sequence[int]) -> _Layout:
    offsets = tuple(int(o) for o in np.cumsum([0, *sizes])[:-1])
    blocks = tuple(n // _BLOCK for n in sizes)
    block_offsets = tuple(int(o) for o in np.cumsum([0, *blocks])[:-1])
    return _Layout(tuple(sizes), offsets, blocks, block_offsets, sum(sizes), sum(blocks))


class _Bracket(NamedTuple):
    """Exact state: c_hi = #(key >= hi) < k <= c_hi + count = #(key >= lo)."""

    lo: jax.Array  # uint32 key
    hi: jax.Array  # uint32 key
    c_hi: jax.Array
    count: jax.Array


def _counting_pass(mains, tail_keys, bracket, thresholds):
    """Counts scores of [lo, hi) in the 6 sub-intervals cut by 5 thresholds.

    Returns per-array block words (field j of a word = the block's count in
    sub-interval j) and the exact global count of each sub-interval.
    """
    lo, hi = _to_signed(bracket.lo), _to_signed(bracket.hi)
    ths = [_to_signed(thresholds[j]) for j in range(_FIELDS - 1)]

    def field_shift(key):
        inside = (key >= lo) & (key < hi)
        bucket = sum((key >= t).astype(jnp.int32) for t in ths)
        return inside, bucket * _FIELD_BITS

    words = []
    counts = jnp.zeros((_FIELDS,), jnp.int32)
    fields = jnp.arange(_FIELDS, dtype=jnp.int32) * _FIELD_BITS
    for main in mains:
        inside, shift = field_shift(_signed_key(main))
        word = jnp.sum(jnp.where(inside, jnp.int32(1) << shift, 0), axis=1)
        words.append(word)
        counts += jnp.sum((word[:, None] >> fields) & 31, axis=0)
    if tail_keys.size:
        inside, shift = field_shift(tail_keys)
        counts += jnp.sum(inside[:, None] & (shift[:, None] == fields), axis=0)
    return words, counts


def _narrow(bracket, thresholds, counts, k):
    """Picks the sub-interval holding rank k; returns (new bracket, its index)."""
    edges = jnp.concatenate([bracket.lo[None], thresholds, bracket.hi[None]])
    # at_least[j] = #(key >= edges[j]); non-increasing in j.
    at_least = bracket.c_hi + jnp.cumsum(counts[::-1])[::-1]
    j = jnp.sum(at_least[1:] >= k)
    c_hi = jnp.where(j + 1 < _FIELDS, at_least[jnp.minimum(j + 1, _FIELDS - 1)], bracket.c_hi)
    return _Bracket(edges[j], edges[j + 1], c_hi, counts[j]), j


def _even_thresholds(bracket):
    step = jnp.maximum((bracket.hi - bracket.lo) // _FIELDS, 1)
    return bracket.lo + step * jnp.arange(1, _FIELDS, dtype=jnp.uint32)


def _sample_thresholds(sample, bracket, k):
    """Thresholds around the sample's estimate of the k-th key, or even splits."""
    first = jnp.searchsorted(sample, bracket.lo, side="left")
    n_in = jnp.searchsorted(sample, bracket.hi, side="left") - first
    count = bracket.count.astype(jnp.float32)
    frac = (count - (k - bracket.c_hi).astype(jnp.float32) + 0.5) / count  # from below
    pos = first + frac * n_in - 0.5
    sigma = jnp.sqrt(n_in * frac * (1.0 - frac)) + 1.0
    idx = jnp.round(pos + sigma * jnp.asarray(_SPREAD, jnp.float32)).astype(jnp.int32)
    picked = sample[jnp.clip(idx, first, first + n_in - 1)]
    return jnp.where(n_in >= _MIN_SAMPLE_IN_BRACKET, picked, _even_thresholds(bracket))


def _strictly_inside(thresholds, bracket):
    """Makes thresholds strictly increasing inside (lo, hi] so every pass shrinks."""
    out, prev = [], bracket.lo
    for j in range(_FIELDS - 1):
        prev = jnp.minimum(jnp.maximum(thresholds[j], prev + 1), bracket.hi)
        out.append(prev)
    return jnp.stack(out)


def _sample_keys(flats, layout):
    """Sorted keys of a fixed stratified random sample (one score per stratum)."""
    rng = np.random.default_rng(_SEED)
    parts = []
    for flat, n in zip(flats, layout.sizes, strict=True):
        m = min(n, max(1, round(_SAMPLE * n / layout.total)))
        if n == 0:
            continue
        starts = (np.arange(m) * n) // m
        widths = ((np.arange(1, m + 1) * n) // m) - starts
        idx = starts + (rng.random(m) * widths).astype(np.int64)
        parts.append(ordered_key(flat[jnp.asarray(idx, jnp.int32)]))
    return jnp.sort(jnp.concatenate(parts))


def _prefix_rows(counts, width):
    """Pads to rows of `width`; returns (rows, inclusive prefix of row sums)."""
    rows = -(-counts.shape[0] // width)
    padded = jnp.pad(counts, (0, rows * width - counts.shape[0])).reshape(rows, width)
    return padded, jnp.cumsum(jnp.sum(padded, axis=1, dtype=jnp.int32))


def _select_bit(words, rank):
    """Position of the (rank+1)-th set bit of each uint32 word."""
    pos = jnp.zeros_like(rank)
    for width in (16, 8, 4, 2, 1):
        low = lax.population_count((words >> pos.astype(jnp.uint32)) & ((1 << width) - 1))
        low = low.astype(jnp.int32)
        up = rank >= low
        pos = jnp.where(up, pos + width, pos)
        rank = jnp.where(up, rank - low, rank)
    return pos


def _compact(flags, size):
    """Indices of the True entries of a 1-D bool array, in order, padded to `size`.

    Returns (indices, number found). Works on 32-bit words so the prefix sum
    runs over 1/32 of the entries.
    """
    rows = -(-flags.shape[0] // _WORD_BITS)
    padded = jnp.pad(flags, (0, rows * _WORD_BITS - flags.shape[0]))
    shifts = jnp.arange(_WORD_BITS, dtype=jnp.uint32)
    words = jnp.sum(padded.reshape(rows, _WORD_BITS).astype(jnp.uint32) << shifts, axis=1)
    ones = lax.population_count(words).astype(jnp.int32)
    prefix = jnp.cumsum(ones)
    slot = jnp.arange(size, dtype=jnp.int32)
    row = jnp.minimum(jnp.searchsorted(prefix, slot, side="right"), rows - 1)
    rank = slot - (prefix[row] - ones[row])
    return row * _WORD_BITS + _select_bit(words[row], rank), prefix[-1]


def _gather_blocks(mains, layout, block_ids):
    """Gathers global blocks (any array) -> (keys, global indices), each (n, 16)."""
    keys = jnp.full((block_ids.shape[0], _BLOCK), _INT_MIN, jnp.int32)
    first = jnp.zeros(block_ids.shape, jnp.int32)
    for i, main in enumerate(mains):
        if main is None:
            continue
        local = block_ids - layout.block_offsets[i]
        here = (local >= 0) & (local < layout.blocks[i])
        rows = _signed_key(main[jnp.clip(local, 0, layout.blocks[i] - 1)])
        keys = jnp.where(here[:, None], rows, keys)
        first = jnp.where(here, layout.offsets[i] + local * _BLOCK, first)
    return keys, first[:, None] + jnp.arange(_BLOCK, dtype=jnp.int32)


def _kth_in_set(keys, gidx, valid, rank):
    """Exact (key, index) of the rank-th best valid entry (key desc, index asc)."""

    def key_step(bit, t):  # largest t with #(key >= t) >= rank, built bit by bit
        c = t | (jnp.uint32(1) << (31 - bit).astype(jnp.uint32))
        return jnp.where(jnp.sum(valid & (ukeys >= c)) >= rank, c, t)

    ukeys = lax.bitcast_convert_type(keys, jnp.uint32) ^ jnp.uint32(0x80000000)
    t = lax.fori_loop(0, 32, key_step, jnp.uint32(0))
    tied = valid & (ukeys == t)
    need = rank - jnp.sum(valid & (ukeys > t))

    def index_step(bit, c):  # largest c with #(tied, gidx < c) < need
        trial = c | (1 << (30 - bit))
        return jnp.where(jnp.sum(tied & (gidx < trial)) < need, trial, c)

    return _to_signed(t), lax.fori_loop(0, 31, index_step, jnp.int32(0)) + 1


def _fast_finish(mains, tail_keys, tail_gidx, layout, words, field, bracket, k):
    """Threshold and index cut from the <= _CAP scores of the bracket."""
    keys, gidx, used = [tail_keys], [tail_gidx], [jnp.ones(tail_keys.shape, bool)]
    if words:
        flags = jnp.concatenate([((w >> (field * _FIELD_BITS)) & 31) != 0 for w in words])
        block_ids, n_blocks = _compact(flags, _CAP)
        block_keys, block_gidx = _gather_blocks(mains, layout, block_ids)
        keys.append(block_keys.reshape(-1))
        gidx.append(block_gidx.reshape(-1))
        used.append(jnp.repeat(jnp.arange(_CAP) < n_blocks, _BLOCK))
    keys, gidx, used = (jnp.concatenate(x) for x in (keys, gidx, used))
    lo, hi = _to_signed(bracket.lo), _to_signed(bracket.hi)
    inside = used & (keys >= lo) & (keys < hi)
    picked, _ = _compact(inside, _CAP)
    valid = jnp.arange(_CAP) < bracket.count
    return _kth_in_set(keys[picked], gidx[picked], valid, k - bracket.c_hi)


def _nth_tied_index(mains, tail_keys, tail_gidx, layout, tie, need):
    """Global index + 1 of the need-th score (in global order) whose key is `tie`."""
    tail_counts = (tail_keys == tie).astype(jnp.int32)
    per_entry, tail_pos = [], 0
    for i, main in enumerate(mains):  # entries in global order: blocks, then tail
        if main is not None:
            per_entry.append(jnp.sum(_signed_key(main) == tie, axis=1, dtype=jnp.int32))
        n_tail = layout.sizes[i] - layout.blocks[i] * _BLOCK
        per_entry.append(tail_counts[tail_pos : tail_pos + n_tail])
        tail_pos += n_tail
    entries = jnp.concatenate(per_entry)
    rows, prefix = _prefix_rows(entries, _WORD_BITS)
    row = jnp.minimum(jnp.searchsorted(prefix, need, side="left"), rows.shape[0] - 1)
    need = need - (prefix[row] - jnp.sum(rows[row]))
    within = jnp.cumsum(rows[row])
    entry = row * _WORD_BITS + jnp.searchsorted(within, need, side="left")
    need = need - (within - rows[row])[entry % _WORD_BITS]
    # Map the entry back to (array, block or tail score).
    entry_offsets = np.cumsum([0, *(n - b * (_BLOCK - 1) for n, b in
                                    zip(layout.sizes, layout.blocks, strict=True))])
    array = jnp.searchsorted(jnp.asarray(entry_offsets[1:-1], jnp.int32), entry, side="right")
    local = entry - jnp.asarray(entry_offsets[:-1], jnp.int32)[array]
    blocks = jnp.asarray(layout.blocks, jnp.int32)[array]
    offset = jnp.asarray(layout.offsets, jnp.int32)[array]
    in_tail_index = offset + blocks * _BLOCK + (local - blocks)
    block_ids = (jnp.asarray(layout.block_offsets, jnp.int32)[array] + local)[None]
    keys, gidx = _gather_blocks(mains, layout, block_ids)
    hit = jnp.cumsum(keys[0] == tie) == need
    in_block_index = gidx[0, jnp.argmax(hit & (keys[0] == tie))]
    return jnp.where(local < blocks, in_block_index, in_tail_index) + 1


def _select(scores: Sequence[jax.Array], k, force_slow: bool = False):
    """Threshold key, index cut and diagnostics for `topk_masks`."""
    layout = _layout([int(np.prod(s.shape)) for s in scores])
    if layout.total >= 2**31 - 1:
        raise ValueError("topk_masks supports fewer than 2**31 - 1 scores in total.")
    flats = [s.reshape(-1) for s in scores]
    mains = [f[: b * _BLOCK].reshape(b, _BLOCK) if b else None
             for f, b in zip(flats, layout.blocks, strict=True)]
    live = [m for m in mains if m is not None]
    tails = [f[b * _BLOCK:] for f, b in zip(flats, layout.blocks, strict=True)]
    tail_keys = _signed_key(jnp.concatenate([t.astype(jnp.float32) for t in tails]))
    tail_gidx = jnp.asarray(np.concatenate(
        [np.arange(o + b * _BLOCK, o + n, dtype=np.int32)
         for o, b, n in zip(layout.offsets, layout.blocks, layout.sizes, strict=True)]))
    k = jnp.clip(jnp.asarray(k, jnp.int32), 0, layout.total)
    rank = jnp.maximum(k, 1)  # k == 0 is handled by the final threshold
    sample = _sample_keys(flats, layout)
    start = _Bracket(jnp.uint32(0), jnp.uint32(_KEY_TOP), jnp.int32(0), jnp.int32(layout.total))
    # With no pass made, field 0 of every word flags every block as a candidate.
    no_words = [jnp.ones((m.shape[0],), jnp.int32) for m in live]

    def fast_cond(state):
        bracket, _, _, passes = state
        return (bracket.count > _CAP) & (bracket.hi - bracket.lo > 1) & (
            passes < (0 if force_slow else _MAX_FAST_PASSES))

    def fast_body(state):
        bracket, _, _, passes = state
        # Tie the scores to the loop state, or XLA hoists their keys out of the
        # loop and materialises 4 bytes per score (slower than recomputing).
        scores_now, bracket = lax.optimization_barrier((live, bracket))
        ths = _strictly_inside(_sample_thresholds(sample, bracket, rank), bracket)
        words, counts = _counting_pass(scores_now, tail_keys, bracket, ths)
        bracket, field = _narrow(bracket, ths, counts, rank)
        return bracket, words, field, passes + 1

    bracket, words, field, passes = lax.while_loop(
        fast_cond, fast_body, (start, no_words, jnp.int32(0), jnp.int32(0)))

    def fast(bracket):
        return (*_fast_finish(mains, tail_keys, tail_gidx, layout, words, field, bracket, rank),
                jnp.int32(0))

    def slow(bracket):
        def body(state):
            bracket, passes = state
            scores_now, bracket = lax.optimization_barrier((live, bracket))
            ths = _strictly_inside(_even_thresholds(bracket), bracket)
            _, counts = _counting_pass(scores_now, tail_keys, bracket, ths)
            return _narrow(bracket, ths, counts, rank)[0], passes + 1

        bracket, slow_passes = lax.while_loop(
            lambda s: s[0].hi - s[0].lo > 1, body, (bracket, jnp.int32(0)))
        tie = _to_signed(bracket.lo)
        cut = _nth_tied_index(mains, tail_keys, tail_gidx, layout, tie, rank - bracket.c_hi)
        return tie, cut, slow_passes

    use_fast = bracket.count <= _CAP
    if force_slow:
        use_fast, bracket = jnp.bool_(False), start
    threshold, cut, slow_passes = lax.cond(use_fast, fast, slow, bracket)
    threshold = jnp.where(k == 0, jnp.int32(2**31 - 1), threshold)
    info = {"fast": use_fast, "passes": passes, "slow_passes": slow_passes,
            "candidates": bracket.count}
    return threshold, cut, info


def _masks_from_threshold(scores, threshold, cut):
    masks, offset = [], 0
    for s in scores:
        n = int(np.prod(s.shape))
        key = _signed_key(s.reshape(-1))
        local = jnp.arange(n, dtype=jnp.int32)
        keep = (key > threshold) | ((key == threshold) & (local < cut - offset))
        masks.append(keep.reshape(s.shape))
        offset += n
    return masks


def topk_masks(scores: Sequence[jax.Array], k: jax.Array | int) -> list[jax.Array]:
    """Boolean masks keeping the k highest scores over all arrays together.

    The ranking is global (no per-array normalisation). Ties at the threshold
    go to the lower global flat index, the global order being array order in
    the list, then row-major order inside each array. NaN ranks below -inf and
    -0.0 equals +0.0. Works under `jax.jit` with a traced k (one compile serves
    every k) and never sorts the N scores; see the module docstring.

    Args:
      scores: arrays of float32, bfloat16 or float16 scores (cast to float32).
      k: how many scores to keep in total, 0 <= k <= total size (clipped).

    Returns:
      One bool array per score array, of the same shape, with exactly k True
      entries in total.
    """
    scores = list(scores)
    if not scores:
        return []
    threshold, cut, _ = _select(scores, k)
    return _masks_from_threshold(scores, threshold, cut)


def _topk_masks_with_info(scores: Sequence[jax.Array], k, force_slow: bool = False):
    """`topk_masks` plus diagnostics (which path ran, passes); for tests and benchmarks."""
    scores = list(scores)
    threshold, cut, info = _select(scores, k, force_slow)
    return _masks_from_threshold(scores, threshold, cut), info
