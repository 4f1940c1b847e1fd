"""Exact global top-k over a list of score arrays, without sorting the N scores.

The CPU kernel behind `force_jax.core.selection` (the seam every mask goes
through, which runs a plain stable sort on other backends; the tests check
this kernel against that sort and against numpy).

XLA:CPU sorts millions of floats slowly, and `lax.top_k` is slow for large k,
but it counts ``key >= t`` over all scores in one fast pass (the figures are in
docs/performance.md and benchmarks/RESULTS.md), provided the count is
first summed over blocks of 16 (a sum over one long axis is rewritten into a
tree of reduce-windows that does not fuse the comparison and costs ten times
more). So the selection is a short search driven by exact counts:

1. A fixed, stratified random sample of 64 Ki scores (fewer when N < 2 M) is
   sorted (cheap at that size); its order statistics predict where the k-th key lies.
2. Each counting pass cuts the current exact bracket ``[lo, hi)`` of keys at 5
   thresholds taken from the sample around the predicted rank (evenly in key
   space once the sample has too few points inside) and counts, per block of
   16 scores, the scores of each of the 6 sub-intervals, 5 bits per count in
   one int32. Summed over blocks this gives exact counts, hence the
   sub-interval holding rank k. All global quantities are sums of counts, so
   scores sharded across devices only need a cross-device sum. Continuous
   scores need 1 pass (k <= ~0.5% of N) or 2.
3. Once at most ``_capacity(N)`` (16 Ki for large N) scores remain in the
   bracket, the blocks holding them are found from the last pass's block
   counts and compacted (bit words, a prefix sum over N/512 words, binary
   search), gathered, compacted again to single scores, and finished by
   bisection on the key and then on the global index (the tie-break).
4. When the bracket shrinks to a single key still held by more scores than
   that capacity (massive ties, e.g. exact zeros), the fallback finds the cut
   among the tied scores from their per-block counts with a prefix search.
   The same fallback, forced from the full key range, narrows the bracket
   evenly in key space alone: it is the exact slow path (about 12 passes).

Passes compare int32 keys, never floats, because XLA:CPU compares subnormal
floats as zero.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_BLOCK = 16  # scores per block; a block's count (0..16) fits in 5 bits.
_FIELD_BITS = 5
_FIELDS = 6  # sub-intervals per pass: 6 fields x 5 bits in one int32.
# Sample size and fast-finish capacity (candidate scores and blocks) grow with
# N up to these; fixed sizes would dominate the cost for small networks.
_SAMPLE = 1 << 16  # small enough that its sort is a minor cost
_CAP = 16384
_MAX_PASSES = 8  # sample-guided passes; continuous scores need 1 or 2.
_MIN_SAMPLE_IN_BRACKET = 8  # below this, split the bracket evenly in key space.
# Thresholds at the predicted sample position + z * sigma of its estimate.
_SPREAD = (-3.5, -1.2, 0.0, 1.2, 3.5)
_WORD_BITS = 32  # blocks per compaction word.
_INT_MIN = -(2**31)
_KEY_TOP = 0xFF800001  # one above the key of +inf: an empty upper bracket.
_UKEY_MINUS_INF = 0x00800000
_SEED = 0


def ordered_key(x: jax.Array) -> jax.Array:
    """Maps floats to uint32 keys whose unsigned order is the float order.

    Args:
      x: float array (float32, bfloat16 or float16; cast to float32).

    Returns:
      uint32 array of the shape of ``x``: -inf is the lowest number and +inf the
      highest, -0.0 and +0.0 share a key, and every NaN maps to 0, below -inf.
    """
    bits = lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
    sign = bits >> 31  # 0 or -1
    # Negative floats: flip the magnitude bits so that larger magnitudes sort
    # lower, then add one so that -0.0 lands on +0.0.
    signed = (bits ^ (sign & 0x7FFFFFFF)) - sign
    signed = jnp.where((bits & 0x7FFFFFFF) > 0x7F800000, jnp.int32(_INT_MIN), signed)  # NaN
    return lax.bitcast_convert_type(signed, jnp.uint32) ^ jnp.uint32(0x80000000)


def _raw_key(x: jax.Array) -> jax.Array:
    """Cheap int32 key for the counting passes (4 vector ops, no select).

    It is `ordered_key` with two differences that the thresholds absorb (see
    `_raw_at_least`): -0.0 lies one below +0.0, and NaNs are spread over the
    values below -inf (the offset wraps positive NaNs round to the bottom).
    """
    bits = lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
    return (bits ^ ((bits >> 31) & 0x7FFFFFFF)) + jnp.int32(0x7FFFFF)


_RAW_MINUS_INF = -0x7F000002  # _raw_key(-inf); every NaN is below it


def _raw_at_least(ukey: jax.Array) -> jax.Array:
    """r such that ordered_key(x) >= ukey iff _raw_key(x) >= r (ukey <= key of +inf).

    On non-NaN scores, _raw_key = signed ordered key - [x negative or -0.0] +
    0x7FFFFF, so thresholds at or below +0.0 move down by one; thresholds
    between NaN (0) and -inf keep everything but NaN.
    """
    signed = lax.bitcast_convert_type(ukey ^ jnp.uint32(0x80000000), jnp.int32)
    raw = signed - (signed <= 0).astype(jnp.int32) + jnp.int32(0x7FFFFF)
    raw = jnp.where(ukey <= _UKEY_MINUS_INF, jnp.int32(_RAW_MINUS_INF), raw)
    return jnp.where(ukey == 0, jnp.int32(_INT_MIN), raw)


def _raw_below(ukey: jax.Array) -> jax.Array:
    """r such that ordered_key(x) < ukey iff _raw_key(x) <= r (ukey >= 1)."""
    return jnp.where(ukey >= jnp.uint32(_KEY_TOP), jnp.int32(2**31 - 1), _raw_at_least(ukey) - 1)


class _Layout(NamedTuple):
    """Static geometry: array i has `blocks[i]` blocks of 16, then a short tail."""

    sizes: tuple[int, ...]
    offsets: tuple[int, ...]  # global flat index of each array's first score
    blocks: tuple[int, ...]
    block_offsets: tuple[int, ...]  # global block index of each array's first block


def _layout(sizes: Sequence[int]) -> _Layout:
    blocks = tuple(n // _BLOCK for n in sizes)
    return _Layout(tuple(sizes), _exclusive_cumsum(sizes), blocks, _exclusive_cumsum(blocks))


def _exclusive_cumsum(values: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in np.cumsum([0, *values])[:-1])


class _Bracket(NamedTuple):
    """Exact search state: c_hi = #(key >= hi) < k <= c_hi + count = #(key >= lo)."""

    lo: jax.Array  # uint32 ordered key
    hi: jax.Array  # uint32 ordered key, <= _KEY_TOP
    c_hi: jax.Array
    count: jax.Array


def _counting_pass(mains, tail_keys, bracket, thresholds, full_range=False):
    """Counts the scores of [lo, hi) in the 6 sub-intervals cut by 5 thresholds.

    Returns per-array block words (5-bit field j of a word = the block's count
    in sub-interval j) and the exact global count of each sub-interval.
    `full_range` (static) says [lo, hi) holds every score: no range test.
    """
    lowest, highest = _raw_at_least(bracket.lo), _raw_below(bracket.hi)
    at_least = [_raw_at_least(t) for t in thresholds]
    words = []
    for main in mains:
        raw = _raw_key(main)
        field = sum((raw >= r).astype(jnp.int32) for r in at_least)
        word = jnp.int32(1) << (field * _FIELD_BITS)
        if not full_range:
            word = jnp.where((raw >= lowest) & (raw <= highest), word, 0)
        words.append(jnp.sum(word, axis=1))
    counts = _field_sums(words)
    if tail_keys.size:
        edges = jnp.concatenate([bracket.lo[None], thresholds, bracket.hi[None]])
        in_field = (tail_keys[:, None] >= edges[None, :-1]) & (tail_keys[:, None] < edges[None, 1:])
        counts += jnp.sum(in_field, axis=0, dtype=jnp.int32)
    return words, counts


def _field_sums(words):
    """Sums each 5-bit field over all words of all arrays.

    Even and odd fields are split 10 bits apart so that 16 words add without
    overflow, in a small-axis reduction that XLA:CPU fuses (a long reduction
    is rewritten into an unfused tree, ten times slower); the barrier stops
    XLA merging the two stages back into one long reduction.
    """
    even = jnp.int32(sum(31 << (2 * _FIELD_BITS * j) for j in range(_FIELDS // 2)))
    partial = [[], []]
    for w in words:
        whole = w.shape[0] // _BLOCK * _BLOCK
        for part in (w[:whole].reshape(-1, _BLOCK), w[whole:].reshape(1, -1)):
            if part.size:
                partial[0].append(jnp.sum(part & even, axis=1))
                partial[1].append(jnp.sum((part >> _FIELD_BITS) & even, axis=1))
    if not words:
        return jnp.zeros((_FIELDS,), jnp.int32)
    partial = lax.optimization_barrier(jnp.stack([jnp.concatenate(p) for p in partial]))
    shifts = jnp.arange(_FIELDS // 2, dtype=jnp.int32) * 2 * _FIELD_BITS
    sums = jnp.sum((partial[:, :, None] >> shifts) & 1023, axis=1)  # (even/odd, field // 2)
    return sums.T.reshape(-1)


def _narrow(bracket, thresholds, counts, k):
    """Picks the sub-interval holding rank k; returns (new bracket, its index)."""
    edges = jnp.concatenate([bracket.lo[None], thresholds, bracket.hi[None]])
    # at_least[j] = #(key >= edges[j]), non-increasing in j.
    at_least = bracket.c_hi + jnp.cumsum(counts[::-1])[::-1]
    at_least = jnp.concatenate([at_least, bracket.c_hi[None]])
    j = jnp.sum(at_least[1:_FIELDS] >= k)
    return _Bracket(edges[j], edges[j + 1], at_least[j + 1], counts[j]), j


def _even_thresholds(bracket):
    step = jnp.maximum((bracket.hi - bracket.lo) // _FIELDS, 1)
    return bracket.lo + step * jnp.arange(1, _FIELDS, dtype=jnp.uint32)


def _sample_thresholds(sample, bracket, k):
    """Thresholds around the sample's estimate of the k-th key, or even splits."""
    # Counting beats searchsorted here: one fused op instead of a loop of small ones.
    first = jnp.sum(sample < bracket.lo, dtype=jnp.int32)
    n_in = jnp.sum(sample < bracket.hi, dtype=jnp.int32) - first
    count = bracket.count.astype(jnp.float32)
    frac = (count - (k - bracket.c_hi).astype(jnp.float32) + 0.5) / count  # from below
    pos = first + frac * n_in - 0.5
    sigma = jnp.sqrt(n_in * frac * (1.0 - frac)) + 1.0
    idx = jnp.round(pos + sigma * jnp.asarray(_SPREAD, jnp.float32)).astype(jnp.int32)
    picked = sample[jnp.clip(idx, first, first + n_in - 1)]
    return jnp.where(n_in >= _MIN_SAMPLE_IN_BRACKET, picked, _even_thresholds(bracket))


def _strictly_inside(thresholds, bracket):
    """Makes thresholds increase strictly inside (lo, hi], so every pass shrinks.

    They stay at or below the key of +inf, the largest key a pass can test.
    """
    out, prev = [], bracket.lo
    top = jnp.minimum(bracket.hi, jnp.uint32(_KEY_TOP - 1))
    for j in range(_FIELDS - 1):
        prev = jnp.minimum(jnp.maximum(thresholds[j], prev + 1), top)
        out.append(prev)
    return jnp.stack(out)


def _sample_size(total: int) -> int:
    return min(_SAMPLE, max(1024, total // 32))


def _capacity(total: int) -> int:
    return min(_CAP, max(2048, total // 64))


def _sample_keys(flats, layout):
    """Sorted keys of a fixed stratified random sample (one score per stratum)."""
    rng = np.random.default_rng(_SEED)
    total = sum(layout.sizes)
    size = _sample_size(total)
    parts = []
    for flat, n in zip(flats, layout.sizes, strict=True):
        if n == 0:
            continue
        m = min(n, max(1, round(size * n / total)))
        starts = (np.arange(m) * n) // m
        widths = ((np.arange(1, m + 1) * n) // m) - starts
        idx = starts + (rng.random(m) * widths).astype(np.int64)
        parts.append(ordered_key(flat[jnp.asarray(idx, jnp.int32)]))
    return jnp.sort(jnp.concatenate(parts))


def _select_bit(words, rank):
    """Position of the (rank+1)-th set bit of each uint32 word."""
    pos = jnp.zeros_like(rank)
    for width in (16, 8, 4, 2, 1):
        low = lax.population_count((words >> pos.astype(jnp.uint32)) & ((1 << width) - 1))
        up = rank >= low.astype(jnp.int32)
        pos = jnp.where(up, pos + width, pos)
        rank = jnp.where(up, rank - low.astype(jnp.int32), rank)
    return pos


def _compact(flags, size):
    """Indices of the True entries of a 1-D bool array, in order, padded to `size`.

    Returns (indices, number found); slots past the number found hold junk. The
    prefix sum runs over 32-bit words, 1/32 of the entries, and each slot finds
    its word by binary search and its bit by popcounts.
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
    # The barrier materialises the indices: otherwise XLA fuses their bit search
    # into every gather that uses them, once per gathered element.
    return lax.optimization_barrier((row * _WORD_BITS + _select_bit(words[row], rank), prefix[-1]))


def _gather_blocks(prep, block_ids):
    """Blocks by global block index -> (ordered keys, global indices), each (n, 16)."""
    layout = prep.layout
    values = jnp.zeros((block_ids.shape[0], _BLOCK), jnp.float32)
    first = jnp.zeros(block_ids.shape, jnp.int32)
    for i, main in enumerate(prep.mains):
        if main is None:
            continue
        local = block_ids - layout.block_offsets[i]
        here = (local >= 0) & (local < layout.blocks[i])
        rows = main[jnp.clip(local, 0, layout.blocks[i] - 1)].astype(jnp.float32)
        values = jnp.where(here[:, None], rows, values)
        first = jnp.where(here, layout.offsets[i] + local * _BLOCK, first)
    return ordered_key(values), first[:, None] + jnp.arange(_BLOCK, dtype=jnp.int32)


def _kth_in_set(keys, gidx, valid, rank):
    """(key, global index + 1) of the rank-th valid entry by (key desc, index asc)."""

    def key_step(bit, t):  # largest t with #(key >= t) >= rank, built bit by bit
        trial = t | (jnp.uint32(1) << (31 - bit).astype(jnp.uint32))
        return jnp.where(jnp.sum(valid & (keys >= trial)) >= rank, trial, t)

    t = lax.fori_loop(0, 32, key_step, jnp.uint32(0))
    tied = valid & (keys == t)
    need = rank - jnp.sum(valid & (keys > t))

    def index_step(bit, c):  # largest c with #(tied, gidx < c) < need
        trial = c | (1 << (30 - bit))
        return jnp.where(jnp.sum(tied & (gidx < trial)) < need, trial, c)

    return t, lax.fori_loop(0, 31, index_step, jnp.int32(0)) + 1


def _finish(prep, words, field, bracket, k):
    """Threshold key and index cut from the <= capacity scores left in the bracket."""
    cap = _capacity(sum(prep.layout.sizes))
    keys, gidx = [prep.tail_keys], [prep.tail_gidx]
    used = [jnp.ones(prep.tail_keys.shape, bool)]
    if words:
        flags = jnp.concatenate([((w >> (field * _FIELD_BITS)) & 31) != 0 for w in words])
        block_ids, n_blocks = _compact(flags, cap)
        block_keys, block_gidx = _gather_blocks(prep, block_ids)
        keys.append(block_keys.reshape(-1))
        gidx.append(block_gidx.reshape(-1))
        used.append(jnp.repeat(jnp.arange(cap) < n_blocks, _BLOCK))
    keys, gidx, used = (jnp.concatenate(x) for x in (keys, gidx, used))
    inside = used & (keys >= bracket.lo) & (keys < bracket.hi)
    picked, _ = _compact(inside, cap)
    valid = jnp.arange(cap) < bracket.count
    return _kth_in_set(keys[picked], gidx[picked], valid, k - bracket.c_hi)


def _nth_tied_index(prep, tie, need):
    """Global index + 1 of the need-th score, in global order, whose key is `tie`.

    Counts the tied scores per block (entries: each array's blocks, then its
    tail scores one by one), finds the entry holding the need-th by a prefix
    search over rows of 32 entries, then the score inside it.
    """
    layout = prep.layout
    lowest, highest = _raw_at_least(tie), _raw_below(tie + 1)
    tail_counts = (prep.tail_keys == tie).astype(jnp.int32)
    per_entry, tail_pos = [], 0
    for i, main in enumerate(prep.mains):
        if main is not None:
            raw = _raw_key(main)
            per_entry.append(jnp.sum((raw >= lowest) & (raw <= highest), axis=1, dtype=jnp.int32))
        n_tail = layout.sizes[i] - layout.blocks[i] * _BLOCK
        per_entry.append(tail_counts[tail_pos : tail_pos + n_tail])
        tail_pos += n_tail
    entries = jnp.concatenate(per_entry)
    n_rows = -(-entries.shape[0] // _WORD_BITS)
    rows = jnp.pad(entries, (0, n_rows * _WORD_BITS - entries.shape[0]))
    rows = rows.reshape(n_rows, _WORD_BITS)
    prefix = jnp.cumsum(jnp.sum(rows, axis=1))
    row = jnp.minimum(jnp.searchsorted(prefix, need, side="left"), n_rows - 1)
    need = need - (prefix[row] - jnp.sum(rows[row]))
    within = jnp.cumsum(rows[row])
    column = jnp.searchsorted(within, need, side="left")
    need = need - (within[column] - rows[row, column])
    entry = row * _WORD_BITS + column
    # Map the entry back to (array, block) or a tail score.
    counts = [n - b * (_BLOCK - 1) for n, b in zip(layout.sizes, layout.blocks, strict=True)]
    entry_offsets = jnp.asarray(_exclusive_cumsum(counts), jnp.int32)
    array = jnp.sum(entry >= entry_offsets) - 1
    local = entry - entry_offsets[array]
    blocks = jnp.asarray(layout.blocks, jnp.int32)[array]
    tail_index = jnp.asarray(layout.offsets, jnp.int32)[array] + blocks * _BLOCK + local - blocks
    block_id = jnp.asarray(layout.block_offsets, jnp.int32)[array] + local
    keys, gidx = _gather_blocks(prep, block_id[None])
    tied = keys[0] == tie
    block_index = gidx[0, jnp.argmax(tied & (jnp.cumsum(tied) == need))]
    return jnp.where(local < blocks, block_index, tail_index) + 1


class _Scores(NamedTuple):
    """The score arrays cut into blocks of 16 (None for arrays below 16) and tails."""

    layout: _Layout
    mains: list  # per array: (blocks, 16) view, or None
    live: list  # the mains that are not None
    tail_keys: jax.Array  # ordered keys of all tails, in global order
    tail_gidx: jax.Array  # their global indices


def _prepare(scores: Sequence[jax.Array]) -> _Scores:
    layout = _layout([int(np.prod(s.shape)) for s in scores])
    if sum(layout.sizes) >= 2**31 - 1:
        raise ValueError("topk_masks supports fewer than 2**31 - 1 scores in total.")
    flats = [s.reshape(-1) for s in scores]
    whole = [b * _BLOCK for b in layout.blocks]
    mains = [f[:w].reshape(-1, _BLOCK) if w else None for f, w in zip(flats, whole, strict=True)]
    tails = [f[w:].astype(jnp.float32) for f, w in zip(flats, whole, strict=True)]
    tail_gidx = [
        np.arange(o + w, o + n, dtype=np.int32)
        for o, w, n in zip(layout.offsets, whole, layout.sizes, strict=True)
    ]
    return _Scores(
        layout,
        mains,
        [m for m in mains if m is not None],
        ordered_key(jnp.concatenate(tails)),
        jnp.asarray(np.concatenate(tail_gidx)),
    )


def _slow_select(prep: _Scores, bracket: _Bracket, rank):
    """Exact fallback: narrows [lo, hi) evenly in key space to one key, then finds the cut."""

    def body(state):
        bracket, passes = state
        live, bracket = lax.optimization_barrier((prep.live, bracket))  # see _fast_select
        ths = _strictly_inside(_even_thresholds(bracket), bracket)
        _, counts = _counting_pass(live, prep.tail_keys, bracket, ths)
        return _narrow(bracket, ths, counts, rank)[0], passes + 1

    bracket, passes = lax.while_loop(
        lambda state: state[0].hi - state[0].lo > 1, body, (bracket, jnp.int32(0))
    )
    cut = _nth_tied_index(prep, bracket.lo, rank - bracket.c_hi)
    return bracket.lo, cut, passes


def _fast_select(prep: _Scores, sample, rank):
    """Sample-guided passes, then the candidate finish or, for massive ties, the fallback."""
    cap = _capacity(sum(prep.layout.sizes))

    def body(state, full_range=False):
        bracket, _, _, passes = state
        # Tie the scores to the loop state, or XLA hoists their keys out of the
        # loop and materialises 4 bytes per score (slower than recomputing).
        live, bracket = lax.optimization_barrier((prep.live, bracket))
        ths = _strictly_inside(_sample_thresholds(sample, bracket, rank), bracket)
        words, counts = _counting_pass(live, prep.tail_keys, bracket, ths, full_range)
        bracket, field = _narrow(bracket, ths, counts, rank)
        return bracket, words, field, passes + 1

    def cond(state):
        bracket, _, _, passes = state
        return (bracket.count > cap) & (bracket.hi - bracket.lo > 1) & (passes < _MAX_PASSES)

    # The first pass is peeled off the loop so that its words initialise the carry.
    bracket, words, field, passes = lax.while_loop(
        cond, body, body((_full_bracket(prep), None, None, jnp.int32(0)), full_range=True)
    )
    use_fast = bracket.count <= cap
    threshold, cut, slow_passes = lax.cond(
        use_fast,
        lambda b: (*_finish(prep, words, field, b, rank), jnp.int32(0)),
        lambda b: _slow_select(prep, b, rank),
        bracket,
    )
    info = {
        "fast": use_fast,
        "passes": passes,
        "slow_passes": slow_passes,
        "candidates": bracket.count,
    }
    return threshold, cut, info


def _full_bracket(prep: _Scores) -> _Bracket:
    total = sum(prep.layout.sizes)
    return _Bracket(jnp.uint32(0), jnp.uint32(_KEY_TOP), jnp.int32(0), jnp.int32(total))


def _select(scores: Sequence[jax.Array], k, force_slow: bool = False):
    """Threshold key, index cut and diagnostics for `topk_masks`."""
    prep = _prepare(scores)
    total = sum(prep.layout.sizes)
    k = jnp.clip(jnp.asarray(k, jnp.int32), 0, total)
    rank = jnp.maximum(k, 1)  # k == 0 is applied through the cut below
    if total == 0:
        info = {
            "fast": jnp.bool_(True),
            "passes": jnp.int32(0),
            "slow_passes": jnp.int32(0),
            "candidates": jnp.int32(0),
        }
        return jnp.uint32(_KEY_TOP - 1), jnp.int32(0), info
    if force_slow:
        threshold, cut, passes = _slow_select(prep, _full_bracket(prep), rank)
        info = {
            "fast": jnp.bool_(False),
            "passes": jnp.int32(0),
            "slow_passes": passes,
            "candidates": jnp.int32(sum(prep.layout.sizes)),
        }
    else:
        sample = _sample_keys([s.reshape(-1) for s in scores], prep.layout)
        threshold, cut, info = _fast_select(prep, sample, rank)
    # With cut 0 and the top key as threshold, k == 0 keeps nothing.
    return threshold, jnp.where(k == 0, 0, cut), info


def _masks_from_threshold(scores, threshold, cut):
    """Keeps key > threshold, and key == threshold at global index < cut."""
    above = _raw_below(threshold + 1)  # raw > above  iff  key > threshold
    at_least = _raw_at_least(threshold)
    masks, offset = [], 0
    for s in scores:
        n = int(np.prod(s.shape))
        raw = _raw_key(s.reshape(-1))
        local = jnp.arange(n, dtype=jnp.int32)
        keep = (raw > above) | ((raw >= at_least) & (local < cut - offset))
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
    scores = [jnp.asarray(s) for s in scores]
    if not scores:
        return []
    return _topk_masks_with_info(scores, k)[0]


@functools.partial(jax.jit, static_argnames="force_slow")
def _topk_masks_with_info(scores: Sequence[jax.Array], k, force_slow: bool = False):
    """`topk_masks` plus diagnostics (which path ran, how many passes).

    Jitted so that eager calls compile once per list of shapes too; under an
    outer jit it is inlined. `force_slow` runs the exact fallback from scratch.
    """
    threshold, cut, info = _select(scores, k, force_slow)
    return _masks_from_threshold(scores, threshold, cut), info
