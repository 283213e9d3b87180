"""The motor board's side of the protocol in Python, mirroring firmware/mbmf_device.c (ROS-free).

The device emulator runs it; the C version runs on the board. Both: commands set the setpoints and feed the
device watchdog, which zeroes the setpoints when commands stop; heartbeats are echoed; a config is applied
within the board's limits and acknowledged; telemetry goes out at the configured rate.
Times are integer microseconds of the board's clock (wrapping at 2^32 like the C code).
"""
from __future__ import annotations

from . import protocol as P

MIN_TELEMETRY_HZ, MAX_TELEMETRY_HZ = 1, 200
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 20, 5000
_WRAP = 1 << 32


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


class DeviceBoard:
    """A two-motor board. setpoints: (left, right) Q15 counts as the motor controllers get them."""

    def __init__(self, command_timeout_ms: int = 250, telemetry_rate_hz: int = 100):
        self.decoder = P.FrameDecoder()
        self.config = P.Config(telemetry_rate_hz=_clamp(int(telemetry_rate_hz), MIN_TELEMETRY_HZ, MAX_TELEMETRY_HZ),
                               command_timeout_ms=_clamp(int(command_timeout_ms), MIN_TIMEOUT_MS, MAX_TIMEOUT_MS))
        self.tx_seq = 0
        self.last_command_seq = 0
        self.last_command_us = 0
        self.last_telemetry_us = 0
        self.have_command = False
        self.configured = False
        self.rx_error = False
        self.watchdog_stopped = True      # no command yet: motors at zero
        self.setpoints = (0, 0)
        self.watchdog_stops = 0
        self.commands = 0

    def _next_seq(self) -> int:
        seq, self.tx_seq = self.tx_seq, (self.tx_seq + 1) & 0xFFFF
        return seq

    def receive(self, data: bytes, now_us: int) -> bytes:
        """Feed received bytes; returns the reply bytes (heartbeat echoes, config acks) to send."""
        corrupt_before = self.decoder.counters.corrupt
        replies = b''
        for frame in self.decoder.feed(data):
            if frame.type == P.MOTOR_COMMAND:
                cmd = frame.message
                self.setpoints = (max(cmd.left, -P.SETPOINT_SCALE), max(cmd.right, -P.SETPOINT_SCALE))
                self.last_command_seq = frame.seq
                self.last_command_us = now_us & 0xFFFFFFFF
                self.have_command = True
                self.watchdog_stopped = False
                self.commands += 1
            elif frame.type == P.CONFIG:
                c = frame.message
                c.telemetry_rate_hz = _clamp(c.telemetry_rate_hz, MIN_TELEMETRY_HZ, MAX_TELEMETRY_HZ)
                c.command_timeout_ms = _clamp(c.command_timeout_ms, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS)
                self.config = c
                self.configured = True
                ack = P.ConfigAck(frame.seq, c.kp, c.ki, c.kd, c.telemetry_rate_hz, c.command_timeout_ms)
                replies += P.encode(ack, self._next_seq())
            elif frame.type == P.HEARTBEAT:
                hb = frame.message
                hb.device_time_us = now_us & 0xFFFFFFFF
                replies += P.encode(hb, self._next_seq())
        if self.decoder.counters.corrupt != corrupt_before:
            self.rx_error = True
        return replies

    def update(self, now_us: int) -> None:
        """The device watchdog: zero setpoints when no command came for command_timeout_ms."""
        elapsed = (now_us - self.last_command_us) % _WRAP
        if self.have_command and not self.watchdog_stopped and elapsed > self.config.command_timeout_ms * 1000:
            self.setpoints = (0, 0)
            self.watchdog_stopped = True
            self.watchdog_stops += 1

    def telemetry_due(self, now_us: int) -> bool:
        return (now_us - self.last_telemetry_us) % _WRAP >= 1_000_000 // self.config.telemetry_rate_hz

    def telemetry(self, t: P.Telemetry, battery_low: bool, now_us: int) -> bytes:
        """Completes t (time, last seq, status) and returns its frame; keeps the telemetry schedule."""
        period = 1_000_000 // self.config.telemetry_rate_hz
        t.device_time_us = now_us & 0xFFFFFFFF
        t.last_command_seq = self.last_command_seq
        t.status = ((P.STATUS_WATCHDOG_STOPPED if self.watchdog_stopped else 0)
                    | (P.STATUS_CONFIGURED if self.configured else 0)
                    | (P.STATUS_LOW_BATTERY if battery_low else 0)
                    | (P.STATUS_RX_ERROR if self.rx_error else 0))
        wire = P.encode(t, self._next_seq())
        self.rx_error = False
        if (now_us - self.last_telemetry_us) % _WRAP < 2 * period:
            self.last_telemetry_us = (self.last_telemetry_us + period) % _WRAP
        else:
            self.last_telemetry_us = now_us % _WRAP
        return wire
