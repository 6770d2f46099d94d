"""Host side of the UART frame protocol (format: docs/uart-protocol.md).

Encoding, an incremental decoder that is the same state machine as the device parser in
``runtime_c/src/tt_frame.c`` (same events, same rejection counters), payload helpers, and
``send_frames()`` to talk to a board over a serial port, a pty, or a TCP socket (QEMU's
``-serial tcp:...``).

    link = open_link("tcp:127.0.0.1:5555")        # or "/dev/ttyACM0", "/dev/pts/7", a socket
    replies = send_frames(link, [Frame(FrameType.SAMPLE_LABEL, sample_label_payload(lbl, x))])
"""

from __future__ import annotations

import enum
import os
import select
import socket
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "SYNC",
    "FRAME_VERSION",
    "HEADER_BYTES",
    "CRC_BYTES",
    "OVERHEAD",
    "MAX_PAYLOAD",
    "FrameType",
    "RejectReason",
    "Frame",
    "Rejection",
    "FrameDecoder",
    "FrameError",
    "LinkError",
    "crc8",
    "encode_frame",
    "decode_frames",
    "sample_label_payload",
    "split_sample_label",
    "step_payload",
    "Link",
    "open_link",
    "send_frames",
]

SYNC = b"\xa5\x5a"
FRAME_VERSION = 1
HEADER_BYTES = 8
CRC_BYTES = 4
OVERHEAD = HEADER_BYTES + CRC_BYTES
MAX_PAYLOAD = 0xFFFF


class FrameType(enum.IntEnum):
    SAMPLE = 0x01
    LABEL = 0x02
    SAMPLE_LABEL = 0x03
    STEP = 0x04
    REPORT = 0x05
    SAVE_CHECKPOINT = 0x06
    ACK = 0x07
    NACK = 0x08


class RejectReason(enum.IntEnum):
    HEADER_CHECK = 1
    VERSION = 2
    TYPE = 3
    LENGTH = 4
    CRC = 5


class FrameError(ValueError):
    """A frame cannot be encoded (payload too long, bad type or seq)."""


class LinkError(OSError):
    """The serial/pty/socket link failed or timed out."""


def crc8(data: bytes) -> int:
    """CRC-8, polynomial 0x07, init 0x00, no reflection, no final xor (header check)."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes = b""
    seq: int = 0

    def encode(self) -> bytes:
        return encode_frame(self.type, self.payload, self.seq)

    @property
    def type_name(self) -> str:
        try:
            return FrameType(self.type).name
        except ValueError:
            return f"0x{self.type:02x}"


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    seq: int | None  # known when the header was intact
    type: int | None


def encode_frame(type: int, payload: bytes = b"", seq: int = 0, *, version: int = FRAME_VERSION) -> bytes:
    """One frame: sync, version, type, seq, u16 length, CRC-8 header check, payload, CRC-32.
    (``version`` exists so tests can produce frames the parser must reject.)"""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte maximum")
    if not 0 <= type <= 0xFF or not 0 <= seq <= 0xFF or not 0 <= version <= 0xFF:
        raise FrameError("type, seq and version are single bytes")
    head = struct.pack("<BBBH", version, type, seq, len(payload))
    head += bytes([crc8(head)])
    body = head + payload
    return SYNC + body + struct.pack("<I", zlib.crc32(body))


_HUNT0, _HUNT1, _HEADER, _PAYLOAD, _CRC = range(5)


@dataclass
class FrameDecoder:
    """Incremental decoder, byte-for-byte the device parser's state machine.

    ``max_payload`` plays the role of the device's receive-buffer capacity: longer frames
    are rejected (LENGTH) from their header. ``feed()`` returns the events in order: Frame
    objects for valid frames and Rejection objects for dropped ones.
    """

    max_payload: int = MAX_PAYLOAD
    frames_ok: int = 0
    bytes_skipped: int = 0
    rejected: dict[RejectReason, int] = field(default_factory=lambda: {r: 0 for r in RejectReason})

    def __post_init__(self) -> None:
        self.max_payload = max(0, min(self.max_payload, MAX_PAYLOAD))
        self._state = _HUNT0
        self._hdr = bytearray()
        self._buf = bytearray()
        self._crc = bytearray()
        self._len = 0
        self._replay: list[int] = []

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def feed(self, data: bytes) -> list[Frame | Rejection]:
        events: list[Frame | Rejection] = []
        for b in data:
            ev = self._step(b)
            if ev is not None:
                events.append(ev)
            # Header replay after a header-level rejection (see tt_frame.c): cannot emit.
            while self._replay:
                self._step(self._replay.pop(0))
        return events

    def _reject(self, reason: RejectReason, seq: int | None, type_: int | None, replay: bool) -> Rejection:
        self.rejected[reason] += 1
        self._state = _HUNT0
        if replay and not self._replay:
            self._replay = list(self._hdr)
        return Rejection(reason, seq, type_)

    def _step(self, b: int) -> Frame | Rejection | None:
        st = self._state
        if st == _HUNT0:
            if b == SYNC[0]:
                self._state = _HUNT1
            else:
                self.bytes_skipped += 1
        elif st == _HUNT1:
            if b == SYNC[1]:
                self._state = _HEADER
                self._hdr = bytearray()
            elif b == SYNC[0]:
                self.bytes_skipped += 1
            else:
                self.bytes_skipped += 2
                self._state = _HUNT0
        elif st == _HEADER:
            self._hdr.append(b)
            if len(self._hdr) < 6:
                return None
            h = self._hdr
            if crc8(bytes(h[:5])) != h[5]:
                return self._reject(RejectReason.HEADER_CHECK, None, None, True)
            version, type_, seq = h[0], h[1], h[2]
            length = h[3] | (h[4] << 8)
            if version != FRAME_VERSION:
                return self._reject(RejectReason.VERSION, seq, type_, True)
            if not 1 <= type_ <= max(FrameType):
                return self._reject(RejectReason.TYPE, seq, type_, True)
            if length > self.max_payload:
                return self._reject(RejectReason.LENGTH, seq, type_, True)
            self._len = length
            self._buf = bytearray()
            self._crc = bytearray()
            self._state = _PAYLOAD if length else _CRC
        elif st == _PAYLOAD:
            self._buf.append(b)
            if len(self._buf) >= self._len:
                self._state = _CRC
        else:  # _CRC
            self._crc.append(b)
            if len(self._crc) < 4:
                return None
            h = self._hdr
            self._state = _HUNT0
            if struct.unpack("<I", self._crc)[0] != zlib.crc32(bytes(h) + bytes(self._buf)):
                return self._reject(RejectReason.CRC, h[2], h[1], False)
            self.frames_ok += 1
            return Frame(h[1], bytes(self._buf), h[2])
        return None


def decode_frames(data: bytes, max_payload: int = MAX_PAYLOAD) -> list[Frame]:
    """All valid frames in ``data`` (rejections are dropped; use FrameDecoder to see them)."""
    return [ev for ev in FrameDecoder(max_payload).feed(data) if isinstance(ev, Frame)]


# ----------------------------------------------------------------- payload conventions


def sample_label_payload(label: bytes, sample: bytes) -> bytes:
    """SAMPLE_LABEL payload: u16 label length (LE), label bytes, sample bytes."""
    if len(label) > 0xFFFF:
        raise FrameError("label longer than 65535 bytes")
    return struct.pack("<H", len(label)) + bytes(label) + bytes(sample)


def split_sample_label(payload: bytes) -> tuple[bytes, bytes]:
    """Inverse of sample_label_payload: (label, sample)."""
    if len(payload) < 2:
        raise FrameError("SAMPLE_LABEL payload shorter than its 2-byte label length")
    (n,) = struct.unpack_from("<H", payload)
    if n > len(payload) - 2:
        raise FrameError(f"label length {n} exceeds the payload")
    return bytes(payload[2 : 2 + n]), bytes(payload[2 + n :])


def step_payload(count: int = 1) -> bytes:
    """STEP payload: u32 number of training steps (LE)."""
    return struct.pack("<I", count)


# --------------------------------------------------------------------------- links


class Link:
    """A byte pipe to a device: ``write(data)``, ``read(max_bytes, timeout_s) -> bytes``
    (b"" on timeout), ``close()``. Built by open_link()."""

    def __init__(self, write, read, close, name: str):
        self._write = write
        self._read = read
        self._close = close
        self.name = name

    def write(self, data: bytes) -> None:
        self._write(bytes(data))

    def read(self, max_bytes: int = 4096, timeout_s: float = 1.0) -> bytes:
        return self._read(max_bytes, timeout_s)

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _socket_link(sock: socket.socket, name: str) -> Link:
    def read(n: int, timeout_s: float) -> bytes:
        ready, _, _ = select.select([sock], [], [], max(0.0, timeout_s))
        if not ready:
            return b""
        data = sock.recv(n)
        if not data:
            raise LinkError(f"{name}: connection closed by the device")
        return data

    return Link(sock.sendall, read, sock.close, name)


def _fd_link(fd: int, name: str) -> Link:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            _, ready, _ = select.select([], [fd], [], 5.0)
            if not ready:
                raise LinkError(f"{name}: write timed out")
            view = view[os.write(fd, view) :]

    def read(n: int, timeout_s: float) -> bytes:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout_s))
        if not ready:
            return b""
        try:
            return os.read(fd, n)
        except OSError as e:  # EIO when the other side of a pty has closed
            raise LinkError(f"{name}: {e}") from None

    return Link(write, read, lambda: os.close(fd), name)


def _serial_link(port, name: str) -> Link:
    def read(n: int, timeout_s: float) -> bytes:
        port.timeout = timeout_s
        first = port.read(1)
        if not first:
            return b""
        rest = port.read(min(n - 1, port.in_waiting)) if n > 1 and port.in_waiting else b""
        return first + rest

    return Link(port.write, read, port.close, name)


def open_link(target, *, baud: int = 115200, timeout_s: float = 5.0) -> Link:
    """Open a link to a device.

    ``target`` may be a Link (returned as is), a connected ``socket.socket``, a pyserial
    port object, ``"tcp:HOST:PORT"`` (e.g. QEMU started with ``-serial tcp::PORT,server``),
    or a device path (``/dev/ttyUSB0``, a pty such as ``/dev/pts/3`` from QEMU's
    ``-serial pty``). Device paths use pyserial when it is installed (baud rate applies),
    else a raw file descriptor in raw mode (termios).
    """
    if isinstance(target, Link):
        return target
    if isinstance(target, socket.socket):
        return _socket_link(target, f"socket {target.getpeername()}")
    if hasattr(target, "read") and hasattr(target, "write") and hasattr(target, "in_waiting"):
        return _serial_link(target, getattr(target, "port", "serial"))
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(f"cannot open a link to {target!r}")
    spec = os.fspath(target)
    if spec.startswith("tcp:"):
        host, _, port = spec[4:].rpartition(":")
        try:
            sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s)
        except OSError as e:
            raise LinkError(f"cannot connect to {spec}: {e}") from None
        sock.settimeout(None)
        return _socket_link(sock, spec)
    try:
        import serial  # type: ignore[import-not-found]
    except ImportError:
        serial = None
    if serial is not None:
        try:
            return _serial_link(serial.Serial(spec, baudrate=baud, timeout=timeout_s), spec)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"cannot open {spec}: {e}") from None
    try:
        fd = os.open(spec, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        raise LinkError(f"cannot open {spec}: {e} (for real serial ports install pyserial)") from None
    try:
        import termios
        import tty

        tty.setraw(fd)
        attrs = termios.tcgetattr(fd)
        speed = getattr(termios, f"B{baud}", None)
        if speed is not None:
            attrs[4] = attrs[5] = speed
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (ImportError, OSError):
        pass  # not a tty (e.g. a FIFO): raw bytes anyway
    return _fd_link(fd, spec)


def _read_events(link: Link, decoder: FrameDecoder, deadline: float) -> Iterator[Frame | Rejection]:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        data = link.read(4096, remaining)
        yield from decoder.feed(data)


def send_frames(
    port_or_socket,
    frames: Iterable[Frame | tuple[int, bytes]],
    *,
    wait_ack: bool = True,
    timeout_s: float = 5.0,
    retries: int = 2,
    first_seq: int = 0,
    decoder: FrameDecoder | None = None,
) -> list[Frame]:
    """Send frames; with ``wait_ack`` wait for each one's ACK/NACK (matched by seq) and
    resend on NACK or timeout up to ``retries`` times.

    Frames get consecutive sequence numbers from ``first_seq`` (mod 256) unless they carry
    their own non-zero ``seq``. Returns the device's replies in order (the final ACK or NACK
    for each frame with wait_ack; nothing without). Raises LinkError when a frame stays
    unanswered after all retries.
    """
    link = open_link(port_or_socket)
    dec = decoder if decoder is not None else FrameDecoder()
    replies: list[Frame] = []
    seq = first_seq & 0xFF
    for item in frames:
        frame = item if isinstance(item, Frame) else Frame(item[0], item[1])
        if frame.seq == 0:
            frame = Frame(frame.type, frame.payload, seq)
        seq = (frame.seq + 1) & 0xFF
        wire = frame.encode()
        if not wait_ack:
            link.write(wire)
            continue
        reply = None
        for _attempt in range(retries + 1):
            link.write(wire)
            for ev in _read_events(link, dec, time.monotonic() + timeout_s):
                if isinstance(ev, Frame) and ev.type in (FrameType.ACK, FrameType.NACK) and ev.seq == frame.seq:
                    reply = ev
                    break
            if reply is not None and reply.type == FrameType.ACK:
                break
        if reply is None:
            raise LinkError(
                f"{link.name}: no ACK/NACK for {frame.type_name} seq={frame.seq} after {retries + 1} attempts"
            )
        replies.append(reply)
    return replies
