"""PCG32 (XSH-RR), the one PRNG of tinytrain: numpy twin of runtime_c/src/tt_prng.c.

The specification lives in runtime_c/include/tt_prng.h; in short::

    state' = state * 6364136223846793005 + inc          (mod 2^64, inc odd)
    out    = rotr32(uint32(((state >> 18) ^ state) >> 27), state >> 59)   of the OLD state
    seed(seed, stream): inc = stream << 1 | 1; state = 0; step; state += seed; step

Generating n values is vectorised: state_i = A_i * state_0 + inc * G_i (mod 2^64) with
A_i = a^i and G_i = 1 + a + ... + a^(i-1), tables built by doubling and cached, so a fill
costs a handful of uint64 array operations instead of a Python loop.

    >>> g = Pcg32(seed=42, stream=54)
    >>> u = g.u32(1000)            # == 1000 calls of tt_prng_u32 on a C state seeded alike
    >>> z = g.rademacher(300)      # int8 +-1, 10 draws
"""
from __future__ import annotations

import numpy as np

MULT = 6364136223846793005
MASK64 = (1 << 64) - 1
GAUSS_SD = 147.80054127099805       # sqrt(21845), sd of gauss_i16 values
GAUSS_MAX = 510

_A = np.ones(1, dtype=np.uint64)    # a^i
_G = np.zeros(1, dtype=np.uint64)   # sum_{j<i} a^j


def _tables(n: int):
    """(A[0..n], G[0..n]) as uint64 arrays (n + 1 entries), grown by doubling and cached."""
    global _A, _G
    while _A.size < n + 1:
        L = _A.size
        aL = np.uint64((int(_A[-1]) * MULT) & MASK64)          # a^L
        gL = np.uint64((int(_G[-1]) + int(_A[-1])) & MASK64)   # G_L
        _A = np.concatenate([_A, _A * aL])                   # A_{L+i} = a^L A_i
        _G = np.concatenate([_G, _G * aL + gL])              # G_{L+i} = G_L + a^L G_i
    return _A[:n + 1], _G[:n + 1]


def _output(old: np.ndarray) -> np.ndarray:
    xs = (((old >> np.uint64(18)) ^ old) >> np.uint64(27)).astype(np.uint32)
    rot = (old >> np.uint64(59)).astype(np.uint32)
    return (xs >> rot) | (xs << ((np.uint32(32) - rot) & np.uint32(31)))


def stream_id(step: int, k: int) -> int:
    """The forward-gradient stream key of (step, k): step << 32 | k."""
    return ((int(step) << 32) | (int(k) & 0xFFFFFFFF)) & MASK64


class Pcg32:
    """State (state, inc) as Python ints; every method advances it exactly like the C."""

    def __init__(self, seed: int = 0, stream: int = 0):
        self.seed(seed, stream)

    # ---- state
    def seed(self, seed: int, stream: int) -> None:
        self.inc = ((int(stream) << 1) | 1) & MASK64
        self.state = 0
        self._step()
        self.state = (self.state + int(seed)) & MASK64
        self._step()

    def _step(self) -> int:
        old = self.state
        self.state = (old * MULT + self.inc) & MASK64
        return old

    def copy(self) -> "Pcg32":
        g = Pcg32.__new__(Pcg32)
        g.state, g.inc = self.state, self.inc
        return g

    def advance(self, delta: int) -> None:
        """Jump ahead by delta draws (tt_prng_advance)."""
        acc_m, acc_p, cur_m, cur_p = 1, 0, MULT, self.inc
        delta = int(delta)
        while delta > 0:
            if delta & 1:
                acc_m = (acc_m * cur_m) & MASK64
                acc_p = (acc_p * cur_m + cur_p) & MASK64
            cur_p = ((cur_m + 1) * cur_p) & MASK64
            cur_m = (cur_m * cur_m) & MASK64
            delta >>= 1
        self.state = (acc_m * self.state + acc_p) & MASK64

    # ---- raw draws
    def next_u32(self) -> int:
        return int(_output(np.array([self._step()], dtype=np.uint64))[0])

    def u32(self, n: int) -> np.ndarray:
        """n raw draws (uint32), vectorised."""
        n = int(n)
        if n == 0:
            return np.zeros(0, dtype=np.uint32)
        A, G = _tables(n)
        s0, inc = np.uint64(self.state), np.uint64(self.inc)
        states = A[:n] * s0 + G[:n] * inc                    # wraps mod 2^64
        self.state = (int(A[n]) * self.state + int(G[n]) * self.inc) & MASK64
        return _output(states)

    # ---- derived draws (tt_prng.h)
    def below(self, n: int, bound: int) -> np.ndarray:
        u = self.u32(n).astype(np.uint64)
        return ((u * np.uint64(bound)) >> np.uint64(32)).astype(np.uint32)

    def rademacher(self, n: int) -> np.ndarray:
        """int8 +-1: value i is -1 iff bit (i % 32) of draw i // 32 is set."""
        u = self.u32((int(n) + 31) // 32)
        bits = (u[:, None] >> np.arange(32, dtype=np.uint32)[None, :]) & np.uint32(1)
        return (1 - 2 * bits.astype(np.int8)).reshape(-1)[:n]

    def gauss(self, n: int) -> np.ndarray:
        """int16 Irwin-Hall(4) over the bytes of one draw, minus 510 (sd GAUSS_SD)."""
        u = self.u32(n)
        s = sum(((u >> np.uint32(8 * i)) & np.uint32(255)).astype(np.int16) for i in range(4))
        return (s - 510).astype(np.int16)


def sr_rshift(x, s: int, u) -> np.ndarray:
    """Stochastic rounding floor((x + U) / 2^s), U = top s bits of the uint32 draw u
    (u << (s - 32) for s > 32); tt_sr_rshift_i64. x int64 (array), s in [0, 62]."""
    x = np.asarray(x, dtype=np.int64)
    u = np.asarray(u, dtype=np.uint32).astype(np.int64)
    if s <= 0 or s > 62:
        return x.copy()
    add = (u >> (32 - s)) if s <= 32 else (u << (s - 32))
    q = x >> s                                    # numpy >> on int64 is arithmetic (floor)
    low = x - (q << s)
    return q + ((low + add) >> s)
