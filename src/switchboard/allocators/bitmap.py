"""A range bitmap with Kubernetes' split between static and dynamic values.

Values are offsets 0 … size-1. Kubernetes (pkg/registry/core/service/
allocator, `randomScanStrategyWithOffset`) reserves a lower band [0, offset)
for values that users request by number: dynamic allocation picks a random
start in the upper band [offset, size), scans forward for a free bit and
wraps around inside that band; only when the upper band is full does it scan
the lower band, again from a random start. Static requests (`allocate(n)`)
may take any free value. Splitting the range this way makes a requested
value unlikely to have been handed out dynamically already.

Kubernetes keeps the bits in one big integer and scans bit by bit, which
slows down as the range fills. Here the bits live in 64-bit words, and every
block of 64 words (4096 values) keeps a count of its free values:

    words        [w0 w1 … w63] [w64 … w127] …     one bit per value, 1 = used
    block_free   [    12     ] [     0     ] …     free values per block

A scan finds the lowest free bit of a word with integer tricks (`f & -f`
on the inverted word), skips a whole block when its free count
is zero, and so touches at most one partial block plus the block counters:
the cost per allocation stays flat as the range fills (a /16 service CIDR is
16 blocks). Bits past the end of the range are kept set, so a scan never
returns them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from switchboard.allocators import errors

_WORD_BITS = 64
_FULL = (1 << _WORD_BITS) - 1
_BLOCK_SHIFT = 12  # 4096 values (64 words) per block
_BLOCK_BITS = 1 << _BLOCK_SHIFT


class Bitmap:
    """Free/used state of `size` values with a static band [0, offset)."""

    __slots__ = ("_block_free", "_count", "_offset", "_rng", "_size", "_words")

    def __init__(self, size: int, offset: int = 0, *, rng: random.Random | None = None) -> None:
        if size < 0:
            raise ValueError(f"bitmap size must not be negative, got {size}")
        self._size = size
        # An offset that leaves no upper band means there is no split at all.
        self._offset = offset if 0 < offset < size else 0
        self._rng = rng if rng is not None else random.Random()
        self._count = 0
        self._words: list[int] = []
        self._block_free: list[int] = []
        self.clear()

    # ---- queries -----------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def offset(self) -> int:
        """First value of the dynamic band; values below it are kept for static requests."""
        return self._offset

    def free(self) -> int:
        return self._size - self._count

    def used(self) -> int:
        return self._count

    def has(self, n: int) -> bool:
        if not 0 <= n < self._size:
            return False
        return bool(self._words[n >> 6] >> (n & 63) & 1)

    def __iter__(self) -> Iterator[int]:
        """The used values in ascending order."""
        last = len(self._words) - 1
        tail = self._size & 63
        for index, word in enumerate(self._words):
            if index == last and tail:
                word &= (1 << tail) - 1  # the padding bits are not values
            base = index << 6
            while word:
                low = word & -word
                yield base + low.bit_length() - 1
                word ^= low

    def __len__(self) -> int:
        return self._count

    # ---- changes -----------------------------------------------------------------------

    def allocate(self, n: int) -> bool:
        """Take value `n`; False when it is already taken."""
        if not 0 <= n < self._size:
            raise ValueError(f"value {n} is outside the bitmap [0, {self._size})")
        index, bit = n >> 6, 1 << (n & 63)
        if self._words[index] & bit:
            return False
        self._words[index] |= bit
        self._block_free[n >> _BLOCK_SHIFT] -= 1
        self._count += 1
        return True

    def allocate_next(self) -> int:
        """Take a free value, preferring the dynamic band; raise RangeFull when none is left."""
        if self._count >= self._size:
            raise errors.RangeFull()
        size, offset, rng = self._size, self._offset, self._rng
        start = offset + rng.randrange(size - offset)
        at = self._scan(start, size)
        if at < 0:
            at = self._scan(offset, start)
        if at < 0 and offset:
            start = rng.randrange(offset)
            at = self._scan(start, offset)
            if at < 0:
                at = self._scan(0, start)
        if at < 0:  # unreachable while _count is right; keeps the invariant loud
            raise errors.RangeFull()
        self.allocate(at)
        return at

    def release(self, n: int) -> None:
        """Give value `n` back; releasing a free or out-of-range value does nothing."""
        if not 0 <= n < self._size:
            return
        index, bit = n >> 6, 1 << (n & 63)
        if not self._words[index] & bit:
            return
        self._words[index] &= ~bit
        self._block_free[n >> _BLOCK_SHIFT] += 1
        self._count -= 1

    def clear(self) -> None:
        """Free every value."""
        nwords = (self._size + _WORD_BITS - 1) // _WORD_BITS
        self._words = [0] * nwords
        tail = self._size & 63
        if tail:
            self._words[-1] = _FULL ^ ((1 << tail) - 1)
        nblocks = (self._size + _BLOCK_BITS - 1) >> _BLOCK_SHIFT
        self._block_free = [
            min(_BLOCK_BITS, self._size - (b << _BLOCK_SHIFT)) for b in range(nblocks)
        ]
        self._count = 0

    def load(self, other: Bitmap) -> None:
        """Take over the used values of `other`, a bitmap of the same size."""
        if other._size != self._size:
            raise ValueError(f"cannot load a bitmap of size {other._size} into {self._size}")
        self._words = list(other._words)
        self._block_free = list(other._block_free)
        self._count = other._count

    def empty_like(self) -> Bitmap:
        """A free bitmap with the same size, offset and random source."""
        return Bitmap(self._size, self._offset, rng=self._rng)

    # ---- scanning ----------------------------------------------------------------------

    def _scan(self, lo: int, hi: int) -> int:
        """Lowest free value in [lo, hi), or -1."""
        words, block_free = self._words, self._block_free
        while lo < hi:
            if block_free[lo >> _BLOCK_SHIFT] == 0:
                lo = ((lo >> _BLOCK_SHIFT) + 1) << _BLOCK_SHIFT
                continue
            index = lo >> 6
            free = ~words[index] & ((_FULL << (lo & 63)) & _FULL)
            if free:
                at = (index << 6) | ((free & -free).bit_length() - 1)
                return at if at < hi else -1
            lo = (index + 1) << 6
        return -1
