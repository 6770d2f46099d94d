"""End to end: a firmware on the emulated boards reads frames from the emulated UART
(CMSDK APB UART on mps2-an386, NS16550A on RISC-V virt) and answers over the same UART;
Python drives it through a TCP socket wired to QEMU's -serial."""

from __future__ import annotations

import random
import socket
import struct
import time
import zlib

import pytest

from tt_boards_testlib import C_DIR, REPO, require_qemu
from tinytrain.sim.cross import cross_compile
from tinytrain.sim.qemu import start_qemu
from tinytrain.stream import (
    Frame,
    FrameDecoder,
    FrameType,
    Link,
    RejectReason,
    encode_frame,
    open_link,
    sample_label_payload,
    send_frames,
    step_payload,
)

pytestmark = pytest.mark.qemu

RX_CAPACITY = 256  # rx_buf in uart_echo.c


def _read_until(link, decoder, pred, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for ev in decoder.feed(link.read(4096, deadline - time.monotonic())):
            if pred(ev):
                return ev
    raise AssertionError("device did not answer in time")


@pytest.mark.parametrize("board_name", ["qemu-cortex-m4", "qemu-rv32imafc"])
def test_frames_over_emulated_uart(board_name, build_root):
    board = require_qemu(board_name)
    assert board.stream.driver is not None
    elf = cross_compile(
        board,
        [C_DIR / "uart_echo.c", REPO / "runtime_c/src/tt_frame.c", board.stream.driver],
        [REPO / "runtime_c/include", REPO / "boards/common/uart"],
        build_root / board.name / "uart_echo",
        [],
    )
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    port = server.getsockname()[1]
    with start_qemu(board, elf, serial=f"tcp:127.0.0.1:{port}") as qemu:
        conn, _ = server.accept()
        server.close()
        sock_link = open_link(conn)
        sent = bytearray()  # everything we send, to replay into a host-side decoder at the end

        def write(data: bytes) -> None:
            sent.extend(data)
            sock_link.write(data)

        link = Link(write, sock_link.read, sock_link.close, sock_link.name)
        dec = FrameDecoder()
        hello = _read_until(link, dec, lambda ev: isinstance(ev, Frame))
        assert hello == Frame(FrameType.REPORT, b"hello", 0)

        rng = random.Random(7)
        frames = [
            Frame(FrameType.SAMPLE, rng.randbytes(200)),
            Frame(FrameType.LABEL, b"\x03"),
            Frame(FrameType.SAMPLE_LABEL, sample_label_payload(b"\x07\x00", rng.randbytes(180))),
            Frame(FrameType.STEP, step_payload(3)),
            Frame(FrameType.SAVE_CHECKPOINT, b""),
            Frame(FrameType.SAMPLE, rng.randbytes(RX_CAPACITY)),  # exactly the device buffer
        ]
        replies = send_frames(link, frames, first_seq=1, decoder=dec)
        assert [r.type for r in replies] == [FrameType.ACK] * len(frames)
        for i, (f, r) in enumerate(zip(frames, replies), start=1):
            assert r.seq == i
            typ, crc, length = struct.unpack_from("<BII", r.payload)
            assert (typ, crc, length) == (f.type, zlib.crc32(f.payload), len(f.payload))
        label_len, sample_len = struct.unpack_from("<II", replies[2].payload, 9)
        assert (label_len, sample_len) == (2, 180)

        # Noise, a corrupted frame and an oversized frame: NACKed with the right reasons.
        bad = bytearray(encode_frame(FrameType.SAMPLE, b"x" * 30, seq=40))
        bad[20] ^= 0x04
        link.write(b"\x00\x13\x37" + bytes(bad))
        nack = _read_until(link, dec, lambda ev: isinstance(ev, Frame) and ev.type == FrameType.NACK)
        assert (nack.seq, nack.payload) == (40, bytes([RejectReason.CRC]))
        link.write(encode_frame(FrameType.SAMPLE, bytes(RX_CAPACITY + 1), seq=41))
        nack = _read_until(link, dec, lambda ev: isinstance(ev, Frame) and ev.type == FrameType.NACK)
        assert (nack.seq, nack.payload) == (41, bytes([RejectReason.LENGTH]))
        # The parser resynchronises: a good frame right after the junk is ACKed.
        again = send_frames(link, [Frame(FrameType.LABEL, b"\x01", seq=42)], decoder=dec)
        assert again[0].type == FrameType.ACK

        # REPORT: the device sends its counters and exits.
        link.write(encode_frame(FrameType.REPORT, b"", seq=99))
        rep = _read_until(link, dec, lambda ev: isinstance(ev, Frame) and ev.type == FrameType.REPORT)
        ok, hdr, ver, typ, length, crc, skipped = struct.unpack("<7I", rep.payload)
        assert ok == len(frames) + 2  # + LABEL seq 42 + the REPORT itself
        assert (crc, length, hdr, ver, typ) == (1, 1, 0, 0, 0)
        # The device's counters equal those of the Python decoder fed the same bytes.
        mirror = FrameDecoder(max_payload=RX_CAPACITY)
        mirror.feed(bytes(sent))
        assert (ok, skipped) == (mirror.frames_ok, mirror.bytes_skipped)
        assert [hdr, ver, typ, length, crc] == [mirror.rejected[r] for r in RejectReason]
        result = qemu.wait(10)
        link.close()
    assert result.exit_code == 0, result.stdout + result.stderr
