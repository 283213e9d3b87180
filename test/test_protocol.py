"""The serial protocol: the Python codec, the C device code (compiled with the system cc), the two against each
other (reference frames, and a C device program talking to the host link over a pseudo-terminal), and
docs/protocol.md's stated sizes against both."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from mbmf_ros.hardware import protocol as P
from mbmf_ros.hardware.device import DeviceBoard

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / 'firmware'
CC = shutil.which('cc') or shutil.which('gcc')
needs_cc = pytest.mark.skipif(CC is None, reason='no C compiler (cc) on this machine')


def compile_c(tmp_path, name, *sources) -> Path:
    out = tmp_path / name
    cmd = [CC, '-std=c99', '-Wall', '-Wextra', '-Werror', '-O1', '-o', str(out)] + [str(FIRMWARE / s) for s in sources]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f'{" ".join(cmd)}\n{done.stderr}'
    return out


def test_crc_and_cobs():
    assert P.crc16(b'123456789') == 0x29B1 == P.crc16_fast(b'123456789')
    rng = np.random.default_rng(0)
    for n in (0, 1, 5, 253, 254, 255, 600):
        data = bytes(rng.integers(0, 3, n, dtype=np.uint8))      # many zeros
        enc = P.cobs_encode(data)
        assert 0 not in enc and len(enc) <= n + 1 + n // 254
        assert P.cobs_decode(enc) == data


def test_frames_round_trip_and_reject_damage():
    t = P.Telemetry(0xFEDCBA98, 65535, 0x0B, 0, 65535, -32768, 32767, -1, 1234, -1000, 0, 256, 1, -981, 981, 3900)
    wire = P.encode(t, 513)
    assert len(wire) == P.wire_size(P.TELEMETRY) == 41 and wire[-1] == 0 and 0 not in wire[:-1]
    frame = P.decode_frame(wire[:-1])
    assert (frame.type, frame.seq, frame.message) == (P.TELEMETRY, 513, t)
    for i in range(len(wire) - 1):                     # any single changed byte is caught
        for flip in (1, 0x80, 0xFF):
            bad = bytearray(wire[:-1])
            bad[i] ^= flip
            if 0 in bad:
                continue
            with pytest.raises(P.ProtocolError):
                P.decode_frame(bytes(bad))
    cmd = P.MotorCommand.from_fractions(1.5, -0.25)
    assert (cmd.left, cmd.right) == (32767, -8192)


def test_decoder_resynchronises_after_garbage_and_counts():
    good = P.encode(P.MotorCommand(100, -100), 9)
    rng = np.random.default_rng(1)
    garbage = bytes(rng.integers(1, 256, 500, dtype=np.uint8))      # no delimiter at all
    stream = garbage + b'\x00' + good + good[:5] + b'\x00\x00' + good
    dec = P.FrameDecoder()
    frames = []
    for i in range(0, len(stream), 7):                               # arbitrary read boundaries
        frames += dec.feed(stream[i:i + 7])
    assert [f.message for f in frames] == [P.MotorCommand(100, -100)] * 2
    assert dec.counters.ok == 2 and dec.counters.corrupt == 2


def test_device_board_watchdog_and_random_bytes():
    """A minute of random bytes at 57600 baud (345 600 bytes) into the board: it never applies a setpoint."""
    board = DeviceBoard(command_timeout_ms=250)
    board.receive(P.encode(P.MotorCommand(16384, -16384), 1), 0)
    assert board.setpoints == (16384, -16384) and not board.watchdog_stopped
    board.update(250_000)
    assert board.setpoints == (16384, -16384)
    board.update(250_001)
    assert board.setpoints == (0, 0) and board.watchdog_stopped and board.watchdog_stops == 1
    rng = np.random.default_rng(2)
    data = bytes(rng.integers(0, 256, 345_600, dtype=np.uint8))
    replies = b''
    for i in range(0, len(data), 4096):
        replies += board.receive(data[i:i + 4096], 300_000)
    assert board.commands == 1 and board.setpoints == (0, 0)
    assert board.decoder.counters.corrupt > 1000 and board.decoder.counters.ok == 1 and replies == b''


def stated_sizes() -> dict:
    """{message: (type, payload bytes, wire bytes)} from the Messages table of docs/protocol.md."""
    text = (REPO / 'docs' / 'protocol.md').read_text()
    rows = re.findall(r'^\| (\w+) \| 0x([0-9a-f]{2}) \| [^|]+ \| (\d+) \| (\d+) \|$', text, re.M)
    return {name: (int(t, 16), int(p), int(w)) for name, t, p, w in rows}


@needs_cc
def test_c_unit_tests(tmp_path):
    exe = compile_c(tmp_path, 'test_protocol', 'test/test_protocol.c', 'mbmf_protocol.c', 'mbmf_device.c')
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'all firmware tests passed' in done.stdout


@needs_cc
def test_doc_sizes_and_reference_frames_match_both_implementations(tmp_path):
    sizes = stated_sizes()
    assert set(sizes) == set(P.TYPE_NAMES.values()), f'docs/protocol.md message table: {sorted(sizes)}'
    header = (FIRMWARE / 'mbmf_protocol.h').read_text()
    for name, (msg_type, payload, wire) in sizes.items():
        assert P.TYPE_NAMES[msg_type] == name
        assert P.PAYLOAD_SIZES[msg_type] == payload, \
            f'{name}: Python payload {P.PAYLOAD_SIZES[msg_type]}, doc {payload}'
        assert P.wire_size(msg_type) == wire == payload + 8
        assert len(P.encode(P.MESSAGES[msg_type](), 0)) == wire
        c_name = f'MBMF_{name.upper()}_SIZE'
        found = re.search(rf'#define {c_name} (\d+)u', header)
        assert found and int(found.group(1)) == payload, f'{c_name} in firmware/mbmf_protocol.h'
    exe = compile_c(tmp_path, 'device_pty', 'tools/device_pty.c', 'mbmf_protocol.c', 'mbmf_device.c')
    out = subprocess.run([str(exe), '--vectors'], capture_output=True, text=True, timeout=30).stdout
    c_frames = dict(line.split() for line in out.strip().splitlines())
    python_frames = {
        'motor_command_full': P.encode(P.MotorCommand(32767, -32767), 1),
        'motor_command_zero': P.encode(P.MotorCommand(0, 0), 0),
        'motor_command_mixed': P.encode(P.MotorCommand(-16384, 256), 65535),
        'telemetry': P.encode(P.Telemetry(0xFEDCBA98, 65535, 0x0B, 0, 65535, -32768, 32767, -1, 1234,
                                          -1000, 0, 256, 1, -981, 981, 3900), 513),
        'config': P.encode(P.Config(256, 13, 0, 100, 250), 2),
        'config_ack': P.encode(P.ConfigAck(7, 256, 13, 0, 100, 250), 3),
        'heartbeat': P.encode(P.Heartbeat(0x01020304, 0), 256),
    }
    assert set(c_frames) == set(python_frames)
    for name, wire in python_frames.items():
        assert c_frames[name] == wire.hex(), f'{name}: C {c_frames[name]} != Python {wire.hex()}'
        assert len(wire) == sizes[name.split('_full')[0].split('_zero')[0].split('_mixed')[0]][2]


@needs_cc
def test_c_device_on_a_pty_against_the_host_link(tmp_path):
    """The C board on a pseudo-terminal and the bridge's HostLink (pyserial): config acknowledged, commands
    applied (telemetry reports their seq and the cranks' speed), heartbeats answered, the device's own watchdog
    stops the motors when commands stop, and every frame each side received re-encodes to the same bytes."""
    from mbmf_ros.hardware.link import HostLink, LinkSettings
    exe = compile_c(tmp_path, 'device_pty', 'tools/device_pty.c', 'mbmf_protocol.c', 'mbmf_device.c')
    proc = subprocess.Popen([str(exe), '30'], stdout=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.startswith('/dev/'), port
        config = P.Config(kp=512, ki=3, kd=1, telemetry_rate_hz=100, command_timeout_ms=200)
        link = HostLink(LinkSettings(port=port, heartbeat_period_s=0.1, config=config))
        received = []
        raw = []
        original_feed = link.decoder.feed

        def until(predicate, timeout, what):
            deadline = time.monotonic() + timeout
            while not predicate():
                assert time.monotonic() < deadline, f'timed out waiting for {what}: {link.summary()}'
                received.extend(link.poll())
                time.sleep(0.002)

        until(lambda: link.config_acked is not None, 5, 'the config_ack')
        assert link.config_acked == P.ConfigAck(0, 512, 3, 1, 100, 200)
        # the host re-encodes what it decodes: the device's bytes, byte for byte
        link.decoder.feed = lambda data: (raw.append(data), original_feed(data))[1]
        seqs = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:        # 20 Hz commands, half speed forward
            seqs.append(link.send_command(0.5, -0.25))
            until(lambda: time.monotonic() - t0 > 0.05 * len(seqs), 1, 'the next command time')
        until(lambda: received and received[-1].telemetry.last_command_seq == seqs[-1], 2, 'the last seq echoed')
        last = received[-1].telemetry
        assert last.speeds == pytest.approx((15.0, -7.5), abs=0.02)
        assert not last.status & P.STATUS_WATCHDOG_STOPPED and last.status & P.STATUS_CONFIGURED
        assert link.counters.heartbeats_answered >= 5 and 0 < link.rtt_s < 0.1
        # commands stop: the device's own watchdog (200 ms from our config) zeroes the motors
        t_stop = time.monotonic()
        until(lambda: received[-1].telemetry.status & P.STATUS_WATCHDOG_STOPPED, 2, 'the device watchdog')
        assert 0.15 < time.monotonic() - t_stop < 0.5
        until(lambda: received[-1].telemetry.speeds == (0.0, 0.0), 1, 'stopped cranks')
        assert link.counters.device_watchdog_stops == 1
        stream = b''.join(raw)
        chunks = [c for c in stream.split(b'\x00')[1:-1] if c]
        assert len(chunks) > 100
        for chunk in chunks:
            frame = P.decode_frame(chunk)
            assert P.encode(frame.message, frame.seq) == chunk + b'\x00'
        assert link.counters.frames_corrupt == 0 and link.counters.frames_missing == 0
        link.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        summary = proc.communicate(timeout=10)[0]
    fields = dict(kv.split('=') for kv in summary.split('summary ')[1].split())
    assert int(fields['commands']) == len(seqs) + 1          # + the zero command the host sends as it closes
    assert int(fields['disagree']) == 0 and int(fields['agree']) >= len(seqs) + 5
    assert int(fields['rx_corrupt']) == 0 and int(fields['watchdog_stops']) == 1
