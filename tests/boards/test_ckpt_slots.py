"""Two-slot checkpoint store (runtime_c/src/tt_ckpt_slots.c), tested on the host through
cffi with a simulated NOR flash whose power can be cut after any byte operation."""

from __future__ import annotations

import random
import shutil

import pytest

import tt_cffi_build

REGION = 1024  # two slots of 512 bytes
ERASE_BLOCK = 64


@pytest.fixture(scope="module")
def cmod(tmp_path_factory):
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no host C compiler for the cffi module")
    mod = tt_cffi_build.build_ckpt(tmp_path_factory.mktemp("cffi-ckpt"))
    ffi = mod.ffi

    @ffi.def_extern()
    def py_erase(ctx, offset, length):
        return ffi.from_handle(ctx).erase(offset, length)

    @ffi.def_extern()
    def py_write(ctx, offset, data, length):
        return ffi.from_handle(ctx).write(offset, bytes(ffi.buffer(data, length)))

    @ffi.def_extern()
    def py_read(ctx, offset, data, length):
        return ffi.from_handle(ctx).read(offset, data, length)

    return mod


class Flash:
    """NOR flash model: erase sets bytes to 0xFF, programming ANDs bits in. The power fails
    after `budget` byte operations: the byte being processed at that moment is left in a
    random intermediate state and every later call fails."""

    def __init__(self, ffi, size: int, budget: int | None = None, seed: int = 0):
        self.ffi = ffi
        self.mem = bytearray(b"\xff" * size)
        self.budget = budget
        self.ops = 0
        self.dead = False
        self.rng = random.Random(seed)
        self.handle = ffi.new_handle(self)

    def _take(self, n: int) -> int:
        """How many of the next n byte ops happen before the power cut (n if none)."""
        if self.budget is None:
            self.ops += n
            return n
        left = self.budget - self.ops
        done = min(n, max(left, 0))
        self.ops += done
        if done < n:
            self.dead = True
        return done

    def erase(self, offset: int, length: int) -> int:
        if self.dead:
            return -1
        done = self._take(length)
        self.mem[offset : offset + done] = b"\xff" * done
        if done < length:
            self.mem[offset + done] |= self.rng.randrange(256)  # half-erased byte
            return -1
        return 0

    def write(self, offset: int, data: bytes) -> int:
        if self.dead:
            return -1
        done = self._take(len(data))
        for i in range(done):
            self.mem[offset + i] &= data[i]
        if done < len(data):
            self.mem[offset + done] &= data[done] | self.rng.randrange(256)  # half-programmed byte
            return -1
        return 0

    def read(self, offset: int, out, length: int) -> int:
        if self.dead:
            return -1
        self.ffi.memmove(out, bytes(self.mem[offset : offset + length]), length)
        return 0

    def io(self, lib):
        io = self.ffi.new("tt_ckpt_io *")
        io.erase = lib.py_erase
        io.write = lib.py_write
        io.read = lib.py_read
        io.ctx = self.handle
        io.region_bytes = len(self.mem)
        io.erase_block = ERASE_BLOCK
        return io


def open_store(cmod, flash):
    store = cmod.ffi.new("tt_ckpt_store *")
    io = flash.io(cmod.lib)
    assert cmod.lib.tt_ckpt_open(store, io) == cmod.lib.TT_CKPT_OK
    return store, io


def load(cmod, store):
    ffi, lib = cmod.ffi, cmod.lib
    buf = ffi.new("uint8_t[]", REGION)
    n, seq = ffi.new("uint32_t *"), ffi.new("uint32_t *")
    st = lib.tt_ckpt_load(store, buf, REGION, n, seq)
    if st == lib.TT_CKPT_NONE:
        return None
    assert st == lib.TT_CKPT_OK, ffi.string(lib.tt_ckpt_status_str(st))
    return bytes(ffi.buffer(buf, n[0])), seq[0]


PAYLOADS = [random.Random(i).randbytes(n) for i, n in enumerate([40, 0, 488, 17, 300, 1, 256])]


def test_empty_store_has_nothing(cmod):
    flash = Flash(cmod.ffi, REGION)
    store, _io = open_store(cmod, flash)
    assert store.active == -1
    assert load(cmod, store) is None
    assert cmod.lib.tt_ckpt_capacity(store) == REGION // 2 - 24


def test_save_load_alternates_slots_and_survives_reopen(cmod):
    lib = cmod.lib
    flash = Flash(cmod.ffi, REGION)
    store, io = open_store(cmod, flash)
    for i, payload in enumerate(PAYLOADS, start=1):
        assert lib.tt_ckpt_save(store, payload, len(payload)) == lib.TT_CKPT_OK
        assert store.active == (i - 1) % 2 and store.sequence == i
        assert load(cmod, store) == (payload, i)
        reopened, _io2 = open_store(cmod, flash)  # "reboot"
        assert load(cmod, reopened) == (payload, i)


def test_too_big_and_bad_geometry(cmod):
    lib, ffi = cmod.lib, cmod.ffi
    flash = Flash(ffi, REGION)
    store, io = open_store(cmod, flash)
    cap = lib.tt_ckpt_capacity(store)
    assert lib.tt_ckpt_save(store, bytes(cap + 1), cap + 1) == lib.TT_CKPT_TOO_BIG
    assert lib.tt_ckpt_save(store, bytes(cap), cap) == lib.TT_CKPT_OK
    small = ffi.new("uint8_t[]", 4)
    assert lib.tt_ckpt_load(store, small, 4, ffi.NULL, ffi.NULL) == lib.TT_CKPT_TOO_BIG
    bad = Flash(ffi, 1000)  # slot of 500 bytes is not a multiple of the 64-byte erase block
    store2 = ffi.new("tt_ckpt_store *")
    assert lib.tt_ckpt_open(store2, bad.io(lib)) == lib.TT_CKPT_BAD_ARG


def test_sequence_wraparound_picks_the_newer_slot(cmod):
    """Sequence numbers compare modulo 2^32: 0x00000001 is newer than 0xFFFFFFFF."""
    lib, ffi = cmod.lib, cmod.ffi
    flash = Flash(ffi, REGION)
    store, io = open_store(cmod, flash)
    assert lib.tt_ckpt_save(store, b"old", 3) == lib.TT_CKPT_OK
    store.sequence = 0xFFFFFFFE  # pretend many saves happened
    assert lib.tt_ckpt_save(store, b"a", 1) == lib.TT_CKPT_OK  # seq 0xFFFFFFFF
    assert lib.tt_ckpt_save(store, b"b", 1) == lib.TT_CKPT_OK  # seq 0 (wrapped)
    assert lib.tt_ckpt_save(store, b"c", 1) == lib.TT_CKPT_OK  # seq 1
    reopened, _io = open_store(cmod, flash)
    assert load(cmod, reopened) == (b"c", 1)


def test_power_cut_at_every_byte_operation_keeps_a_committed_checkpoint(cmod):
    """Run a sequence of saves, cutting the power after k byte operations for EVERY k.
    After each cut: reboot; the store must hold exactly one of the committed checkpoints
    (the last one committed, or the one being written if its commit record made it), and
    saving must work again afterwards."""
    lib, ffi = cmod.lib, cmod.ffi
    # Total byte operations of the whole sequence without a cut.
    ref = Flash(ffi, REGION)
    store, io = open_store(cmod, ref)
    for p in PAYLOADS:
        assert lib.tt_ckpt_save(store, p, len(p)) == lib.TT_CKPT_OK
    total_ops = ref.ops

    outcomes = {"old": 0, "new": 0, "none": 0}
    for cut in range(total_ops + 1):
        flash = Flash(ffi, REGION, budget=cut, seed=cut)
        store, io = open_store(cmod, flash)
        committed = None  # last checkpoint whose save returned OK
        interrupted = None
        for p in PAYLOADS:
            st = lib.tt_ckpt_save(store, p, len(p))
            if st != lib.TT_CKPT_OK:
                assert st == lib.TT_CKPT_IO
                interrupted = p
                break
            committed = p
        flash.budget, flash.dead = None, False  # power back on
        store, io = open_store(cmod, flash)
        got = load(cmod, store)
        if got is None:
            assert committed is None, f"cut {cut}: committed checkpoint lost"
            outcomes["none"] += 1
        else:
            payload, _seq = got
            assert payload in (committed, interrupted), f"cut {cut}: restored data is no committed checkpoint"
            outcomes["old" if payload == committed else "new"] += 1
        # The store keeps working after recovery.
        assert lib.tt_ckpt_save(store, b"after", 5) == lib.TT_CKPT_OK
        assert load(cmod, open_store(cmod, flash)[0])[0] == b"after"
    print(f"\npower cuts: {total_ops + 1} cut points, outcomes {outcomes}")
    assert outcomes["old"] > 0 and outcomes["none"] > 0


def test_ram_backend_from_c(cmod):
    """tt_ckpt_ram_io(): the RAM-backed storage QEMU firmware uses."""
    lib, ffi = cmod.lib, cmod.ffi
    mem = ffi.new("uint8_t[]", REGION)
    ram = ffi.new("tt_ckpt_ram *")
    io = ffi.new("tt_ckpt_io *")
    lib.tt_ckpt_ram_io(io, ram, mem, REGION, ERASE_BLOCK)
    store = ffi.new("tt_ckpt_store *")
    assert lib.tt_ckpt_open(store, io) == lib.TT_CKPT_OK
    assert lib.tt_ckpt_save(store, b"weights", 7) == lib.TT_CKPT_OK
    assert lib.tt_ckpt_save(store, b"weights2", 8) == lib.TT_CKPT_OK
    store2 = ffi.new("tt_ckpt_store *")
    assert lib.tt_ckpt_open(store2, io) == lib.TT_CKPT_OK
    assert load(cmod, store2) == (b"weights2", 2)
