"""The files the copy benchmarks move (bench/cp.sh, bench/compare.sh): random bytes written in
blocks, and their SHA-256. Python 3 standard library only."""

import hashlib
import os

BLOCK = 1024 * 1024


def write_random(path, size):
    """Writes `size` random bytes to `path`; their SHA-256 (hex)."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, BLOCK))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def sha256(path):
    """The SHA-256 (hex) of the file at `path`, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
