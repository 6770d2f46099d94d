"""Fuzz driver for the C frame parser, run by test_frame_fuzz.py in a subprocess whose
Python has the AddressSanitizer runtime preloaded (the module under test is built with
-fsanitize=address,undefined). Any out-of-bounds access or undefined behaviour aborts the
process; a clean exit prints the statistics line the test parses.

usage: python frame_fuzz_driver.py <module.so> <hypothesis examples>
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

import tt_cffi_build  # noqa: E402
from tinytrain.stream import crc8, encode_frame  # noqa: E402

mod = tt_cffi_build.load("_tt_frame_test", Path(sys.argv[1]))
ffi, lib = mod.ffi, mod.lib
MAX_EXAMPLES = int(sys.argv[2])
stats = {"inputs": 0, "bytes": 0, "ready": 0, "rejected": 0}


def run_parser(data: bytes, cap: int) -> None:
    # Exact-size malloc so ASan's redzone sits right behind the last usable byte.
    raw = lib.malloc(max(cap, 1))
    buf = ffi.cast("uint8_t *", raw)
    p = ffi.new("tt_frame_parser *")
    lib.tt_frame_parser_init(p, buf, cap)
    evp = ffi.new("tt_frame_event *")
    while data:
        n = lib.tt_frame_parser_feed(p, data, len(data), evp)
        data = data[n:]
        ev = evp[0]
        if ev == lib.TT_FRAME_READY:
            assert p.payload_len <= cap
            stats["ready"] += 1
            # Split every ready payload as if it were SAMPLE_LABEL (exercises bounds checks).
            label, llen = ffi.new("const uint8_t **"), ffi.new("uint32_t *")
            sample, slen = ffi.new("const uint8_t **"), ffi.new("uint32_t *")
            if lib.tt_frame_split_sample_label(buf, p.payload_len, label, llen, sample, slen) == 0:
                assert llen[0] + slen[0] + 2 == p.payload_len
        elif ev == lib.TT_FRAME_REJECTED:
            stats["rejected"] += 1
    lib.free(raw)


def run_encoder(payload: bytes, out_cap: int, type_: int, seq: int) -> None:
    raw = lib.malloc(max(out_cap, 1))
    out = ffi.cast("uint8_t *", raw)
    n = lib.tt_frame_encode(out, out_cap, type_, seq, payload, len(payload))
    assert n in (0, len(payload) + 12)
    if n:
        assert bytes(ffi.buffer(out, n)) == encode_frame(type_, payload, seq)
    lib.free(raw)


def mutate(data: bytearray, rng: random.Random, count: int) -> bytes:
    for _ in range(count):
        if not data:
            break
        i = rng.randrange(len(data))
        kind = rng.randrange(6)
        if kind == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del data[i]
        elif kind == 2:
            data.insert(i, rng.randrange(256))
        elif kind == 3:
            data[i] = rng.choice((0x00, 0xFF, 0xA5, 0x5A, rng.randrange(256)))
        elif kind == 4:
            data[i:i] = data[: rng.randrange(16)]  # duplicate a prefix: repeated syncs/headers
        else:
            del data[i:]  # truncate
    return bytes(data)


def raw_header(version: int, type_: int, seq: int, length: int) -> bytes:
    """A header with an arbitrary (possibly huge) length and a VALID header check."""
    h = bytes([version, type_, seq, length & 0xFF, length >> 8])
    return b"\xa5\x5a" + h + bytes([crc8(h)])


def make_input(style: str, rng: random.Random, intensity: int) -> bytes:
    if style == "random":
        return rng.randbytes(rng.randrange(300))
    if style == "header":
        hdr = raw_header(rng.randrange(4), rng.randrange(13), rng.randrange(256), rng.randrange(0x10000))
        return hdr + rng.randbytes(rng.randrange(300))
    frames = b"".join(
        encode_frame(rng.randrange(13), rng.randbytes(rng.randrange(120)), rng.randrange(256))
        for _ in range(rng.randrange(1, 6))
    )
    return mutate(bytearray(frames), rng, rng.randrange(intensity + 1))


INPUTS_PER_EXAMPLE = 16


# hypothesis chooses the generation parameters (and shrinks them on failure); each example
# expands into INPUTS_PER_EXAMPLE concrete byte streams with a seeded PRNG, which keeps
# thousands of inputs affordable under the sanitizers.
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), style=st.sampled_from(["random", "mutated", "header"]),
       intensity=st.integers(0, 12), cap=st.sampled_from([0, 1, 2, 7, 16, 64, 255]),
       direct=st.binary(max_size=64))
def fuzz(seed: int, style: str, intensity: int, cap: int, direct: bytes) -> None:
    rng = random.Random(seed)
    inputs = [direct] + [make_input(style, rng, intensity) for _ in range(INPUTS_PER_EXAMPLE - 1)]
    for data in inputs:
        stats["inputs"] += 1
        stats["bytes"] += len(data)
        run_parser(data, cap)
    payload = rng.randbytes(rng.randrange(40))
    run_encoder(payload, rng.randrange(60), rng.randrange(256), rng.randrange(256))


if __name__ == "__main__":
    fuzz()
    print("FUZZ-STATS inputs={inputs} bytes={bytes} ready={ready} rejected={rejected}".format(**stats))
