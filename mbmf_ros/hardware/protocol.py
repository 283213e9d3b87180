"""The mbmf serial protocol between the host (hardware_bridge) and a robot's motor board (ROS-free).

docs/protocol.md is the specification; firmware/mbmf_protocol.c is the device's implementation of the same
bytes, and the tests check the two against each other byte for byte.

A frame before stuffing: version (u8) | type (u8) | seq (u16) | payload (fixed size per type) | CRC-16 (u16),
little-endian; the CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) over
every byte before it. On the wire the frame is COBS-encoded and followed by one 0x00 delimiter, so a receiver
resynchronises at the next zero after any corruption or lost byte.

    wire = encode_frame(TELEMETRY, seq, Telemetry(...).pack())
    decoder = FrameDecoder()
    for frame in decoder.feed(data): ...        # Frame(type, seq, payload); decoder.counters: ok/corrupt
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field, fields

VERSION = 1

# Message types (docs/protocol.md, "Messages").
MOTOR_COMMAND = 0x01   # host -> device
TELEMETRY = 0x02       # device -> host
CONFIG = 0x03          # host -> device
CONFIG_ACK = 0x04      # device -> host
HEARTBEAT = 0x05       # both ways: the device echoes each host heartbeat at once
TYPE_NAMES = {MOTOR_COMMAND: 'motor_command', TELEMETRY: 'telemetry', CONFIG: 'config',
              CONFIG_ACK: 'config_ack', HEARTBEAT: 'heartbeat'}

HEADER_SIZE = 4        # version, type, seq
CRC_SIZE = 2

# Scaling of the integer fields (docs/protocol.md, "Units and scaling").
SETPOINT_SCALE = 32767             # Q15: setpoint = value / 32767, value in [-32767, 32767]
ANGLE_SCALE = 65536 / (2 * math.pi)   # crank angle: counts per rad, [0, 2 pi) -> [0, 65535]
SPEED_LSB = 0.01                   # crank speed: rad/s per count
GYRO_LSB = 0.001                   # rad/s per count
ACCEL_LSB = 0.01                   # m/s^2 per count
GAIN_LSB = 1 / 256                 # PID gains Q8.8

# Telemetry status flags.
STATUS_WATCHDOG_STOPPED = 0x01     # no motor command within the command timeout: the device zeroed the motors
STATUS_CONFIGURED = 0x02           # a CONFIG was applied since power-up
STATUS_LOW_BATTERY = 0x04          # battery below the board's threshold
STATUS_RX_ERROR = 0x08             # the device dropped a corrupt frame since the last telemetry


class ProtocolError(ValueError):
    """A frame that cannot be decoded; the message says which check failed."""


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of data (check value of b'123456789': 0x29B1)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _crc_table() -> list:
    return [crc16(bytes([i]), 0) for i in range(256)]


_TABLE = _crc_table()


def crc16_fast(data: bytes, crc: int = 0xFFFF) -> int:
    """crc16 by table (the same values; the host decodes ~5 kB/s of telemetry with it)."""
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: data without any 0x00, len(data) + 1 + len(data) // 254 bytes."""
    out = bytearray([0])
    code_at, code = 0, 1
    for byte in data:
        if byte == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
            continue
        out.append(byte)
        code += 1
        if code == 0xFF:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode (data without the 0x00 delimiter); ProtocolError when the stuffing is broken."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError('COBS: zero byte inside a frame')
        end = i + code
        if end > n:
            raise ProtocolError(f'COBS: code {code} at byte {i} runs past the frame end ({n} bytes)')
        block = data[i + 1:end]
        if 0 in block:
            raise ProtocolError('COBS: zero byte inside a frame')
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- messages ---------------------------------------------------------------------------------------------
@dataclass
class MotorCommand:
    """Host -> device. left, right: setpoints in Q15 counts, [-32767, 32767] = [-1, 1] of full crank speed."""
    left: int = 0
    right: int = 0
    FORMAT = '<hh'
    TYPE = MOTOR_COMMAND

    @classmethod
    def from_fractions(cls, left: float, right: float) -> 'MotorCommand':
        """Setpoints from fractions in [-1, 1] (clamped; the caller rejects non-finite values before)."""
        return cls(*(int(round(max(-1.0, min(1.0, v)) * SETPOINT_SCALE)) for v in (left, right)))

    def fractions(self) -> tuple:
        return self.left / SETPOINT_SCALE, self.right / SETPOINT_SCALE


@dataclass
class Telemetry:
    """Device -> host, at the configured telemetry rate (counts as on the wire; see the properties for SI).

    device_time_us: the board's microsecond clock (wraps every 2^32 us = 71.6 min). last_command_seq: seq of
    the last motor command received intact. status: STATUS_* bits. left/right_angle: crank angle counts
    (angle * 65536 / 2 pi, [0, 2 pi)). left/right_speed: 0.01 rad/s. left/right_back_emf: mV. gyro: 0.001 rad/s,
    body frame (x forward, y left, z up). accel: 0.01 m/s^2, specific force, body frame. battery_mv: mV.
    """
    device_time_us: int = 0
    last_command_seq: int = 0
    status: int = 0
    left_angle: int = 0
    right_angle: int = 0
    left_speed: int = 0
    right_speed: int = 0
    left_back_emf: int = 0
    right_back_emf: int = 0
    gyro_x: int = 0
    gyro_y: int = 0
    gyro_z: int = 0
    accel_x: int = 0
    accel_y: int = 0
    accel_z: int = 0
    battery_mv: int = 0
    FORMAT = '<IHBHHhhhhhhhhhhH'
    TYPE = TELEMETRY

    @property
    def angles(self) -> tuple:
        """(left, right) crank angles, rad in [0, 2 pi)."""
        return self.left_angle / ANGLE_SCALE, self.right_angle / ANGLE_SCALE

    @property
    def speeds(self) -> tuple:
        """(left, right) crank speeds, rad/s."""
        return self.left_speed * SPEED_LSB, self.right_speed * SPEED_LSB

    @property
    def gyro(self) -> tuple:
        return self.gyro_x * GYRO_LSB, self.gyro_y * GYRO_LSB, self.gyro_z * GYRO_LSB

    @property
    def accel(self) -> tuple:
        return self.accel_x * ACCEL_LSB, self.accel_y * ACCEL_LSB, self.accel_z * ACCEL_LSB

    @property
    def battery_v(self) -> float:
        return self.battery_mv * 0.001


@dataclass
class Config:
    """Host -> device. kp, ki, kd: the board's crank-speed PID gains, Q8.8 counts (1/256); telemetry_rate_hz;
    command_timeout_ms: the device's own watchdog (motors to zero when no command for this long)."""
    kp: int = 256
    ki: int = 0
    kd: int = 0
    telemetry_rate_hz: int = 100
    command_timeout_ms: int = 250
    FORMAT = '<HHHHH'
    TYPE = CONFIG


@dataclass
class ConfigAck:
    """Device -> host: the seq of the CONFIG it answers and the values it applied (after its own limits)."""
    config_seq: int = 0
    kp: int = 0
    ki: int = 0
    kd: int = 0
    telemetry_rate_hz: int = 0
    command_timeout_ms: int = 0
    FORMAT = '<HHHHHH'
    TYPE = CONFIG_ACK


@dataclass
class Heartbeat:
    """Both ways. host_time_us: the host's clock when it sent the heartbeat (echoed unchanged: the round trip);
    device_time_us: 0 from the host, the board's clock in the echo."""
    host_time_us: int = 0
    device_time_us: int = 0
    FORMAT = '<II'
    TYPE = HEARTBEAT


MESSAGES = {cls.TYPE: cls for cls in (MotorCommand, Telemetry, Config, ConfigAck, Heartbeat)}
PAYLOAD_SIZES = {t: struct.calcsize(cls.FORMAT) for t, cls in MESSAGES.items()}


def pack(msg) -> bytes:
    """Payload bytes of a message dataclass; struct.error (out of range) names the field's message type."""
    values = [getattr(msg, f.name) for f in fields(msg)]
    try:
        return struct.pack(msg.FORMAT, *values)
    except struct.error as e:
        raise ProtocolError(f'{TYPE_NAMES[msg.TYPE]}: {e} (values {values})') from None


def unpack(msg_type: int, payload: bytes):
    cls = MESSAGES[msg_type]
    return cls(*struct.unpack(cls.FORMAT, payload))


def frame_bytes(msg_type: int, seq: int, payload: bytes) -> bytes:
    """The unstuffed frame: header + payload + CRC."""
    body = struct.pack('<BBH', VERSION, msg_type, seq & 0xFFFF) + payload
    return body + struct.pack('<H', crc16_fast(body))


def encode_frame(msg_type: int, seq: int, payload: bytes) -> bytes:
    """Wire bytes of one frame: COBS(frame) + 0x00."""
    return cobs_encode(frame_bytes(msg_type, seq, payload)) + b'\x00'


def encode(msg, seq: int) -> bytes:
    return encode_frame(msg.TYPE, seq, pack(msg))


def wire_size(msg_type: int) -> int:
    """Bytes one frame of this type takes on the wire, delimiter included."""
    n = HEADER_SIZE + PAYLOAD_SIZES[msg_type] + CRC_SIZE
    return n + 1 + n // 254 + 1


MAX_WIRE = max(wire_size(t) for t in MESSAGES)


@dataclass
class Frame:
    type: int
    seq: int
    payload: bytes

    @property
    def message(self):
        return unpack(self.type, self.payload)


def decode_frame(chunk: bytes) -> Frame:
    """One frame from the bytes between two delimiters; ProtocolError naming the failed check."""
    raw = cobs_decode(chunk)
    if len(raw) < HEADER_SIZE + CRC_SIZE:
        raise ProtocolError(f'frame of {len(raw)} bytes, shorter than header + CRC')
    (crc,) = struct.unpack_from('<H', raw, len(raw) - CRC_SIZE)
    if crc16_fast(raw[:-CRC_SIZE]) != crc:
        raise ProtocolError('CRC mismatch')
    version, msg_type, seq = struct.unpack_from('<BBH', raw)
    if version != VERSION:
        raise ProtocolError(f'version {version}, expected {VERSION}')
    if msg_type not in PAYLOAD_SIZES:
        raise ProtocolError(f'unknown message type 0x{msg_type:02x}')
    payload = raw[HEADER_SIZE:-CRC_SIZE]
    if len(payload) != PAYLOAD_SIZES[msg_type]:
        raise ProtocolError(f'{TYPE_NAMES[msg_type]} payload of {len(payload)} bytes, expected '
                            f'{PAYLOAD_SIZES[msg_type]}')
    return Frame(msg_type, seq, payload)


@dataclass
class DecoderCounters:
    ok: int = 0            # frames that passed every check
    corrupt: int = 0       # delimited chunks that failed COBS, CRC, version, type or length (or overflowed)
    bytes: int = 0         # bytes fed
    last_error: str = ''


@dataclass
class FrameDecoder:
    """Streaming decoder: feed any bytes, get the good frames; everything else is counted, never raised.

    A chunk longer than a frame can be (garbage, or a lost delimiter) is discarded up to the next 0x00."""
    max_chunk: int = MAX_WIRE
    counters: DecoderCounters = field(default_factory=DecoderCounters)
    _buf: bytearray = field(default_factory=bytearray)
    _overflow: bool = False

    def feed(self, data: bytes) -> list:
        frames = []
        self.counters.bytes += len(data)
        start = 0
        while True:
            end = data.find(0, start)
            if end < 0:
                piece = data[start:]
                if not self._overflow:
                    self._buf += piece
                    if len(self._buf) > self.max_chunk:
                        self._overflow = True
                        self._buf.clear()
                return frames
            if self._overflow:
                self.counters.corrupt += 1
                self.counters.last_error = f'more than {self.max_chunk} bytes without a delimiter'
            else:
                self._buf += data[start:end]
                if len(self._buf) > self.max_chunk:
                    self.counters.corrupt += 1
                    self.counters.last_error = f'more than {self.max_chunk} bytes without a delimiter'
                elif self._buf:      # back-to-back delimiters are idle fill, not an error
                    try:
                        frames.append(decode_frame(bytes(self._buf)))
                        self.counters.ok += 1
                    except ProtocolError as e:
                        self.counters.corrupt += 1
                        self.counters.last_error = str(e)
            self._buf.clear()
            self._overflow = False
            start = end + 1


def seq_gap(previous: int | None, seq: int) -> int:
    """Frames missing between two received sequence numbers (16-bit wrap); 0 for the first frame."""
    if previous is None:
        return 0
    return (seq - previous - 1) & 0xFFFF
