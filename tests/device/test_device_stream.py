"""The stream firmware end to end over QEMU's emulated UART (CMSDK on mps2-an386, NS16550A on
RISC-V virt): samples and labels go over the frame protocol, the device trains on each one,
and its losses and final model (its checkpoint blob: parameters, optimizer state, step) are
bit-identical to the host simulator trained on the same samples. A checkpoint committed to
the device's two-slot store survives a reboot and training resumes from it."""
from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from tinytrain.device import (DeviceProtocolError, StreamSession, build_firmware, emulated_link,
                              stream_train)
from tinytrain.stream import (Frame, FrameType, RejectReason, encode_frame, sample_label_payload,
                              step_payload)

from .devlib import adaptation_data, host_reference, require_qemu

pytestmark = pytest.mark.qemu

N = 20


@pytest.mark.parametrize("board,model,opt", [("qemu-cortex-m4", "mlp", "adam"),
                                             ("qemu-rv32imafc", "mlp", "adam"),
                                             ("qemu-cortex-m4", "cnn", "sgd"),
                                             ("qemu-rv32imafc", "dscnn", "sgd")])
def test_stream_training_bit_identical_to_host(board, model, opt, projects):
    require_qemu(board)
    x, y = adaptation_data(N)
    proj = projects.get(model, opt)
    ref = host_reference(proj, x, y, N, checkpoint_every=10)
    img = build_firmware(proj, board, mode="stream")
    with emulated_link(img) as (link, qemu):
        s = StreamSession(link, img.manifest, hello_timeout_s=10)
        assert s.info["step"] == 0 and s.info["restored"] == 0
        assert s.info["input_size"] == 64 and s.info["output_size"] == 10
        replies = stream_train(s, x[:10], y[:10], checkpoint_every=10)
        replies += stream_train(s, x[10:], y[10:])
        bits = np.concatenate([r.loss_bits for r in replies])
        assert np.array_equal(bits, ref.loss_bits)
        assert [r.step for r in replies] == list(range(1, N + 1))
        assert all(r.status == 0 and r.instret > 0 for r in replies)
        # Parameters, optimizer state and step: the device's checkpoint blob equals the host's.
        assert s.read_checkpoint() == ref.checkpoints[N]
        st = s.status()
        assert (st["step"], st["trained"], st["store_sequence"], st["frames_rejected"]) == (N, N, 1, 0)
        s.halt()
        res = qemu.wait(10)
    assert res.exit_code == 0
    store = res.files["tt_ckpt.img"]

    # Reboot on the persisted store: the device resumes from the checkpoint of step 10.
    with emulated_link(img, flash=store) as (link, qemu):
        s = StreamSession(link, img.manifest, hello_timeout_s=10)
        assert (s.info["restored"], s.info["step"], s.info["store_sequence"]) == (1, 10, 1)
        assert s.read_checkpoint() == ref.checkpoints[10]
        replies = stream_train(s, x[10:], y[10:])
        assert np.array_equal(np.concatenate([r.loss_bits for r in replies]), ref.loss_bits[10:])
        assert s.read_checkpoint() == ref.checkpoints[N]
        s.halt()
        assert qemu.wait(10).exit_code == 0


def _raw(session, data: bytes, seq: int) -> Frame:
    """Write bytes as they are and return the device's reply carrying `seq`."""
    session.link.write(data)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for ev in session.decoder.feed(session.link.read(4096, 0.5)):
            if isinstance(ev, Frame) and ev.seq == seq:
                return ev
    raise AssertionError(f"no reply with seq {seq}")


def test_stream_refusals_and_retransmission(projects):
    board = require_qemu("qemu-cortex-m4")
    x, y = adaptation_data(3)
    proj = projects.get("mlp", "sgd")
    ref = host_reference(proj, x, y, 3)
    img = build_firmware(proj, board, mode="stream")
    with emulated_link(img) as (link, qemu):
        s = StreamSession(link, img.manifest, hello_timeout_s=10)
        with pytest.raises(DeviceProtocolError, match="STEP before a complete sample"):
            s.step()
        with pytest.raises(DeviceProtocolError, match="class index out of range"):
            s.send_sample(x[0], 10)
        with pytest.raises(DeviceProtocolError, match="wrong payload size"):
            s.request(FrameType.SAMPLE_LABEL, sample_label_payload(b"\0\0\0\0", b"\0" * 12))
        with pytest.raises(DeviceProtocolError, match="wrong payload size"):
            s.step(65)  # more than TT_FW_MAX_STEP_COUNT in one frame
        with pytest.raises(DeviceProtocolError, match="not accepted"):
            s.request(FrameType.ACK, b"")
        # Separate SAMPLE and LABEL frames work like SAMPLE_LABEL.
        assert s.request(FrameType.SAMPLE, x[0].astype("<f4").tobytes()).type == FrameType.ACK
        assert s.request(FrameType.LABEL, struct.pack("<i", int(y[0]))).type == FrameType.ACK
        # A STEP whose ACK was "lost" is sent again: the device repeats its reply and trains once.
        step = encode_frame(FrameType.STEP, step_payload(1), seq=200)
        first = _raw(s, step, 200)
        again = _raw(s, step, 200)
        assert first == again and first.type == FrameType.ACK
        assert s.status()["trained"] == 1
        # Line noise and a corrupted frame: NACK with the parser's reason (CRC), and the
        # device carries on with the next frame.
        bad = bytearray(encode_frame(FrameType.STEP, step_payload(1), seq=201))
        bad[-1] ^= 0xFF
        nack = _raw(s, b"\x13\x37" + bytes(bad), 201)
        assert nack.type == FrameType.NACK and nack.payload[0] == RejectReason.CRC
        s.send_sample(x[1], y[1])
        rep1 = s.step()
        s.send_sample(x[2], y[2])
        rep2 = s.step()
        losses = np.frombuffer(first.payload[24:28], "<u4").tolist() + rep1.loss_bits.tolist() \
            + rep2.loss_bits.tolist()
        assert losses == ref.loss_bits.tolist()
        st = s.status()
        assert (st["frames_rejected"], st["trained"], st["step"]) == (1, 3, 3)
        s.halt()
        assert qemu.wait(10).exit_code == 0


def test_session_refuses_firmware_of_another_model(projects):
    board = require_qemu("qemu-rv32imafc")
    img = build_firmware(projects.get("mlp", "sgd"), board, mode="stream")
    other = dict(img.manifest, model_hash="00000000")
    with emulated_link(img) as (link, qemu):
        with pytest.raises(DeviceProtocolError, match="another model"):
            StreamSession(link, other, hello_timeout_s=10)
