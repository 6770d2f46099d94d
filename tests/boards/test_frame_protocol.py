"""UART frame protocol: Python encoder/decoder vs the C parser (runtime_c/src/tt_frame.c)
compiled into a host module with cffi. The C parser is exercised through its public API."""

from __future__ import annotations

import random
import shutil
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinytrain.stream import (
    MAX_PAYLOAD,
    OVERHEAD,
    Frame,
    FrameDecoder,
    FrameError,
    FrameType,
    Rejection,
    RejectReason,
    crc8,
    decode_frames,
    encode_frame,
    sample_label_payload,
    split_sample_label,
    step_payload,
)

import tt_cffi_build


@pytest.fixture(scope="module")
def cmod(tmp_path_factory):
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no host C compiler for the cffi module")
    return tt_cffi_build.build_frame(tmp_path_factory.mktemp("cffi-frame"))


class CParser:
    """The C parser behind the same feed() interface as FrameDecoder."""

    def __init__(self, cmod, cap: int):
        self.ffi, self.lib = cmod.ffi, cmod.lib
        self.p = self.ffi.new("tt_frame_parser *")
        self.buf = self.ffi.new("uint8_t[]", max(cap, 1))
        self.lib.tt_frame_parser_init(self.p, self.buf, cap)

    def feed(self, data: bytes) -> list:
        events = []
        ev = self.ffi.new("tt_frame_event *")
        view = bytes(data)
        while view:
            n = self.lib.tt_frame_parser_feed(self.p, view, len(view), ev)
            view = view[n:]
            if ev[0] == self.lib.TT_FRAME_READY:
                events.append(Frame(self.p.type, bytes(self.ffi.buffer(self.buf, self.p.payload_len)), self.p.seq))
            elif ev[0] == self.lib.TT_FRAME_REJECTED:
                reason = RejectReason(self.p.last_reject)
                known = bool(self.p.seq_valid)
                events.append(Rejection(reason, self.p.seq if known else None, self.p.type if known else None))
        return events

    def counters(self) -> dict:
        return {
            "ok": self.p.frames_ok,
            "skipped": self.p.bytes_skipped,
            "rejected": {r: self.p.rejected[r.value] for r in RejectReason},
        }


def py_counters(d: FrameDecoder) -> dict:
    return {"ok": d.frames_ok, "skipped": d.bytes_skipped, "rejected": dict(d.rejected)}


# ------------------------------------------------------------------- pure Python


def test_crc_check_values():
    assert crc8(b"123456789") == 0xF4  # CRC-8/SMBUS check value
    assert zlib.crc32(b"123456789") == 0xCBF43926


def test_layout_of_one_frame():
    f = encode_frame(FrameType.SAMPLE, b"hello", seq=3)
    assert f[:2] == b"\xa5\x5a"
    assert f[2:7] == bytes([1, FrameType.SAMPLE, 3, 5, 0])
    assert f[7] == crc8(f[2:7])
    assert f[8:13] == b"hello"
    assert struct.unpack("<I", f[13:])[0] == zlib.crc32(f[2:13])
    assert len(f) == OVERHEAD + 5


def test_encode_limits():
    assert len(encode_frame(FrameType.SAMPLE, bytes(MAX_PAYLOAD))) == MAX_PAYLOAD + OVERHEAD
    with pytest.raises(FrameError):
        encode_frame(FrameType.SAMPLE, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(FrameError):
        encode_frame(FrameType.SAMPLE, b"", seq=256)


def test_decoder_rejections_are_classified():
    good = encode_frame(FrameType.STEP, step_payload(5), seq=1)
    bad_crc = bytearray(good)
    bad_crc[9] ^= 0x01
    bad_version = encode_frame(FrameType.STEP, b"", seq=2, version=2)
    bad_type = encode_frame(0x42, b"", seq=3)
    too_long = encode_frame(FrameType.SAMPLE, bytes(100), seq=4)
    bad_header = bytearray(good)
    bad_header[5] ^= 0x10  # length byte: the header check catches it
    d = FrameDecoder(max_payload=64)
    events = d.feed(b"noise" + bytes(bad_crc) + bad_version + bad_type + too_long + bytes(bad_header) + good)
    kinds = [e.reason if isinstance(e, Rejection) else e.type for e in events]
    assert kinds[:5] == [RejectReason.CRC, RejectReason.VERSION, RejectReason.TYPE, RejectReason.LENGTH,
                         RejectReason.HEADER_CHECK]
    assert kinds[-1] == FrameType.STEP and events[-1].payload == step_payload(5)
    assert events[0].seq == 1 and events[4].seq is None


def test_resync_after_truncated_frame():
    f = encode_frame(FrameType.SAMPLE, b"payload", seq=7)
    # A frame cut after 5 bytes, directly followed by a complete one: the header replay
    # finds the second sync inside the bytes the broken header swallowed.
    frames = decode_frames(f[:5] + f)
    assert frames == [Frame(FrameType.SAMPLE, b"payload", 7)]


def test_sample_label_payload_roundtrip():
    p = sample_label_payload(b"\x03", b"\x01\x02\x03\x04")
    assert split_sample_label(p) == (b"\x03", b"\x01\x02\x03\x04")
    with pytest.raises(FrameError):
        split_sample_label(b"\x05\x00ab")


# ------------------------------------------------------------------- C <-> Python


def test_c_crc_matches_python(cmod):
    lib = cmod.lib
    data = bytes(range(256)) * 3
    assert lib.tt_frame_crc32(0, data, len(data)) == zlib.crc32(data)
    assert lib.tt_frame_crc32(lib.tt_frame_crc32(0, data[:100], 100), data[100:], len(data) - 100) == zlib.crc32(data)
    assert lib.tt_frame_crc8(b"123456789", 9) == 0xF4


@pytest.mark.parametrize("length", [0, 1, 63, 64, 1000])
def test_python_to_c_roundtrip(cmod, length):
    payload = random.Random(length).randbytes(length)
    wire = b"".join(encode_frame(t, payload, seq=t * 11) for t in FrameType)
    c = CParser(cmod, cap=1000)
    events = c.feed(wire)
    assert events == [Frame(t, payload, t * 11) for t in FrameType]
    assert c.counters()["ok"] == len(FrameType)


def test_c_to_python_roundtrip(cmod):
    ffi, lib = cmod.ffi, cmod.lib
    rng = random.Random(1)
    for length in (0, 1, 17, 300):
        payload = rng.randbytes(length)
        out = ffi.new("uint8_t[]", length + OVERHEAD)
        n = lib.tt_frame_encode(out, length + OVERHEAD, FrameType.REPORT, 200, payload, length)
        assert n == length + OVERHEAD
        wire = bytes(ffi.buffer(out, n))
        assert wire == encode_frame(FrameType.REPORT, payload, seq=200)
        assert decode_frames(wire) == [Frame(FrameType.REPORT, payload, 200)]
        # One byte too small: refused, nothing written past the buffer.
        assert lib.tt_frame_encode(out, length + OVERHEAD - 1, FrameType.REPORT, 0, payload, length) == 0


def test_c_split_sample_label(cmod):
    ffi, lib = cmod.ffi, cmod.lib
    payload = sample_label_payload(b"lbl", b"sample-bytes")
    label, llen = ffi.new("const uint8_t **"), ffi.new("uint32_t *")
    sample, slen = ffi.new("const uint8_t **"), ffi.new("uint32_t *")
    assert lib.tt_frame_split_sample_label(payload, len(payload), label, llen, sample, slen) == 0
    assert bytes(ffi.buffer(label[0], llen[0])) == b"lbl"
    assert bytes(ffi.buffer(sample[0], slen[0])) == b"sample-bytes"
    assert lib.tt_frame_split_sample_label(b"\x09\x00abc", 5, label, llen, sample, slen) == -1
    assert lib.tt_frame_split_sample_label(b"\x01", 1, label, llen, sample, slen) == -1


def test_c_status_strings(cmod):
    lib, ffi = cmod.lib, cmod.ffi
    assert ffi.string(lib.tt_frame_reject_str(lib.TT_FRAME_REJECT_CRC)) == b"payload CRC-32 mismatch"
    assert ffi.string(lib.tt_frame_type_str(FrameType.SAMPLE_LABEL)) == b"SAMPLE_LABEL"
    assert ffi.string(lib.tt_frame_type_str(0x99)) == b"UNKNOWN"


def _mutate(data: bytearray, ops: list[tuple[int, int, int]]) -> bytes:
    for kind, pos, val in ops:
        if not data:
            break
        i = pos % len(data)
        if kind == 0:
            data[i] ^= 1 << (val % 8)
        elif kind == 1:
            del data[i]
        elif kind == 2:
            data.insert(i, val & 0xFF)
        else:
            del data[i:]
    return bytes(data)


frame_st = st.tuples(
    st.integers(0, 10),  # type (0, 9, 10 are invalid)
    st.binary(max_size=80),
    st.integers(0, 255),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(frame_st, max_size=6),
    noise=st.lists(st.binary(max_size=8), max_size=7),
    ops=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cap=st.sampled_from([0, 1, 16, 64, 200]),
    chunk=st.integers(1, 50),
)
def test_c_and_python_agree_on_every_stream(cmod, frames, noise, ops, cap, chunk):
    """Differential test: same bytes, same capacity -> same events and same counters."""
    parts = []
    for i, (t, payload, seq) in enumerate(frames):
        parts.append(noise[i] if i < len(noise) else b"")
        parts.append(encode_frame(t, payload, seq))
    stream = _mutate(bytearray(b"".join(parts)), ops)
    c = CParser(cmod, cap)
    py = FrameDecoder(max_payload=cap)
    c_events, py_events = [], []
    for i in range(0, len(stream), chunk):  # arbitrary chunking must not matter
        c_events += c.feed(stream[i : i + chunk])
        py_events += py.feed(stream[i : i + chunk])
    assert c_events == py_events
    assert c.counters() == py_counters(py)
    for ev in c_events:
        if isinstance(ev, Frame):
            assert len(ev.payload) <= cap


# ------------------------------------------------------------------- links


def _fake_device(fd_read, fd_write, nack_first: bool):
    """A device on the other end of a byte pipe: ACKs every frame (CRC of the payload),
    NACKs the first one once when asked to (to exercise the retry)."""
    import os
    import select

    dec = FrameDecoder()
    nacked = not nack_first
    while True:
        ready, _, _ = select.select([fd_read], [], [], 5)
        if not ready:
            return
        try:
            data = os.read(fd_read, 4096)
        except OSError:
            return
        if not data:
            return
        for ev in dec.feed(data):
            if not isinstance(ev, Frame):
                continue
            if ev.type == FrameType.REPORT:
                return
            if not nacked:
                nacked = True
                os.write(fd_write, encode_frame(FrameType.NACK, bytes([RejectReason.CRC]), ev.seq))
                continue
            os.write(fd_write, encode_frame(FrameType.ACK, struct.pack("<I", zlib.crc32(ev.payload)), ev.seq))


def test_send_frames_over_a_pty_with_retry():
    import os
    import threading

    from tinytrain.stream import open_link, send_frames

    master, slave = os.openpty()
    device = threading.Thread(target=_fake_device, args=(master, master, True), daemon=True)
    device.start()
    link = open_link(os.ttyname(slave))
    frames = [Frame(FrameType.SAMPLE, bytes([i]) * (10 + i)) for i in range(5)]
    replies = send_frames(link, frames, first_seq=250, timeout_s=5)
    assert [r.seq for r in replies] == [250, 251, 252, 253, 254]  # the NACKed frame was resent
    assert all(r.type == FrameType.ACK for r in replies)
    assert [struct.unpack("<I", r.payload)[0] for r in replies] == [zlib.crc32(f.payload) for f in frames]
    send_frames(link, [Frame(FrameType.REPORT, b"")], wait_ack=False)
    device.join(5)
    link.close()
    os.close(master)
    os.close(slave)


def test_send_frames_times_out_cleanly():
    import socket as socketlib

    from tinytrain.stream import LinkError, send_frames

    a, b = socketlib.socketpair()
    with pytest.raises(LinkError, match="no ACK/NACK for SAMPLE seq=0 after 2 attempts"):
        send_frames(a, [Frame(FrameType.SAMPLE, b"x")], timeout_s=0.2, retries=1)
    a.close()
    b.close()
