"""Deterministic test payloads shared by the backend and the tests.

The stream is a pseudo-random block of PERIOD bytes repeated. PERIOD is deliberately
not a power of two, so a proxy that drops, repeats or reorders whole buffers (which
are powers of two) changes the hash.
"""
import hashlib
import random

PERIOD = (1 << 20) + 13
_rng = random.Random(0x6A7E)
_BLOCK = _rng.randbytes(PERIOD)
DOUBLE = memoryview(_BLOCK + _BLOCK)  # any window up to PERIOD bytes is a contiguous slice
SMALL = bytes(_BLOCK[:1024])          # the body of /small


def pieces(size, offset=0, step=1 << 20):
    """Yields memoryviews that together are bytes [offset, offset+size) of the stream."""
    pos = offset
    end = offset + size
    step = min(step, PERIOD)
    while pos < end:
        n = min(step, end - pos)
        start = pos % PERIOD
        yield DOUBLE[start:start + n]
        pos += n


def sha256(size, offset=0):
    h = hashlib.sha256()
    for p in pieces(size, offset):
        h.update(p)
    return h.hexdigest()


def data(size, offset=0):
    return b"".join(bytes(p) for p in pieces(size, offset))
