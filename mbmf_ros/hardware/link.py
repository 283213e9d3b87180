"""The host's end of the serial link (ROS-free): port handling, reconnects, counters, clock mapping.

    link = HostLink(LinkSettings(port='/dev/ttyUSB0'))
    while True:
        for sample in link.poll():          # TelemetrySample(host_time_s, telemetry)
            ...
        link.send_command(0.5, 0.5)         # fractions of full crank speed in [-1, 1]

``poll()`` never raises for anything on the line or the port: garbage is counted, a failing port closes the link
and it is reopened with exponential back-off. Times are ``time.monotonic()`` seconds unless named otherwise.
"""
from __future__ import annotations

import collections
import math
import time
from dataclasses import asdict, dataclass, field

from . import protocol as P


@dataclass
class LinkSettings:
    """port: device path or pyserial URL; baud; link_timeout_s: no valid frame for this long = link lost;
    reconnect_backoff_s / reconnect_backoff_max_s: first and longest wait between reopen attempts (doubling);
    heartbeat_period_s: round-trip probes; config: sent (and re-sent every config_retry_s) until acknowledged."""
    port: str
    baud: int = 57600
    link_timeout_s: float = 0.5
    reconnect_backoff_s: float = 0.2
    reconnect_backoff_max_s: float = 2.0
    heartbeat_period_s: float = 0.5
    config_retry_s: float = 0.5
    config: P.Config = field(default_factory=P.Config)


@dataclass
class LinkCounters:
    frames_ok: int = 0
    frames_corrupt: int = 0
    frames_missing: int = 0          # sequence gaps: frames that never arrived intact
    bytes_received: int = 0
    bytes_sent: int = 0
    commands_sent: int = 0
    heartbeats_sent: int = 0
    heartbeats_answered: int = 0
    telemetry: int = 0
    device_watchdog_stops: int = 0   # telemetry showed the device's watchdog stop the motors
    link_losses: int = 0
    reconnects: int = 0              # reopen attempts that succeeded
    open_failures: int = 0
    seq_restarts: int = 0            # a device restart (seq jumped back)


@dataclass
class TelemetrySample:
    host_time_s: float          # monotonic time of the sample on the host clock (device time mapped)
    received_s: float           # monotonic time it was read from the port
    telemetry: P.Telemetry


class DeviceClock:
    """Maps the board's wrapping microsecond clock onto the host's monotonic clock: offset = the smallest
    (receive time - device time) over the last ``window_s`` (the fastest delivery approximates the sample time)."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._last_raw = None
        self._wraps = 0
        self._offsets = collections.deque()

    def reset(self):
        self.__init__(self.window_s)

    def to_host(self, device_us: int, received_s: float) -> float:
        if self._last_raw is not None and device_us < self._last_raw and self._last_raw - device_us > 1 << 31:
            self._wraps += 1
        self._last_raw = device_us
        device_s = (device_us + (self._wraps << 32)) * 1e-6
        self._offsets.append((received_s, received_s - device_s))
        while self._offsets and received_s - self._offsets[0][0] > self.window_s:
            self._offsets.popleft()
        return device_s + min(o for _, o in self._offsets)


def validate_action(values, action_dim: int):
    """(values as a tuple of floats, None) for an action that may go to the motors: action_dim finite values in
    [-1, 1]; else (None, the reason). Nothing is clipped: an out-of-range action is a bug upstream, not a wish."""
    try:
        a = [float(v) for v in values]
    except (TypeError, ValueError):
        return None, f'expected {action_dim} numbers, found {values!r}'
    if len(a) != action_dim:
        return None, f'expected {action_dim} values, found {len(a)}: {a}'
    if not all(math.isfinite(v) for v in a):
        return None, f'non-finite value in {a}'
    if any(abs(v) > 1.0 for v in a):
        return None, f'value outside [-1, 1] in {a}'
    return tuple(a), None


def open_serial(port: str, baud: int):
    """A pyserial port (or URL such as loop://), non-blocking reads."""
    import serial
    s = serial.serial_for_url(port, baudrate=baud, timeout=0, write_timeout=0.2)
    try:
        s.set_low_latency_mode(True)      # FTDI's 16 ms latency timer would delay every frame
    except (AttributeError, ValueError, OSError, NotImplementedError):
        pass                              # a pty or a board without it
    return s


class HostLink:
    def __init__(self, settings: LinkSettings, clock=time.monotonic, opener=open_serial, log=None):
        self.s = settings
        self.clock = clock
        self.opener = opener
        self.log = log or (lambda level, text: None)
        self.counters = LinkCounters()
        self.decoder = P.FrameDecoder()
        self.device_clock = DeviceClock()
        self.port = None
        self.state = 'down'               # down (port closed) | connecting (open, nothing valid yet) | up
        self.last_error = ''
        self.tx_seq = 0
        self.last_rx_seq = None
        self.last_valid_s = None
        self.opened_s = None
        self.next_attempt_s = 0.0
        self.backoff_s = settings.reconnect_backoff_s
        self.config_acked = None          # the ConfigAck received
        self.config_sent_s = None
        self.next_heartbeat_s = 0.0
        self.rtt_s = math.nan
        self.rtt_samples = collections.deque(maxlen=50)
        self.latest = None                # the last TelemetrySample
        self._watchdog_seen = True
        self.down_since = clock()

    # --- port -----------------------------------------------------------------------------------------------
    def _open(self, now: float) -> None:
        try:
            self.port = self.opener(self.s.port, self.s.baud)
        except Exception as e:  # noqa: BLE001 - any failure to open is a reason to retry later
            self.counters.open_failures += 1
            self.last_error = f'open {self.s.port}: {e}'
            self.next_attempt_s = now + self.backoff_s
            self.backoff_s = min(self.backoff_s * 2, self.s.reconnect_backoff_max_s)
            return
        self.state = 'connecting'
        self.opened_s = now
        self.decoder = P.FrameDecoder(counters=self.decoder.counters)
        self.last_rx_seq = None
        self.device_clock.reset()
        self.config_acked = None
        self.config_sent_s = None
        self.next_heartbeat_s = now
        self.log('info', f'port {self.s.port} open at {self.s.baud} baud')
        self._send_config(now)

    def _lost(self, now: float, why: str) -> None:
        """The link is gone: try a last zero command, close, reopen after the back-off."""
        if self.state == 'up':
            self.counters.link_losses += 1
            self.down_since = now
        self.last_error = why
        self.log('warn', f'link lost: {why}; reconnecting in {self.backoff_s:.2f} s')
        if self.port is not None:
            try:
                self.port.write(P.encode(P.MotorCommand(0, 0), self._next_seq()))
            except Exception:  # noqa: BLE001 - the port is failing already
                pass
            try:
                self.port.close()
            except Exception:  # noqa: BLE001
                pass
        self.port = None
        self.state = 'down'
        self.next_attempt_s = now + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, self.s.reconnect_backoff_max_s)

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.write(P.encode(P.MotorCommand(0, 0), self._next_seq()))
                self.port.flush()
                self.port.close()
            except Exception:  # noqa: BLE001 - closing a failing port
                pass
        self.port = None
        self.state = 'down'

    # --- sending --------------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        seq, self.tx_seq = self.tx_seq, (self.tx_seq + 1) & 0xFFFF
        return seq

    def _write(self, data: bytes) -> bool:
        if self.port is None:
            return False
        try:
            self.port.write(data)
        except Exception as e:  # noqa: BLE001 - a failing port is a lost link, never a crash
            self._lost(self.clock(), f'write: {e}')
            return False
        self.counters.bytes_sent += len(data)
        return True

    def _send_config(self, now: float) -> None:
        if self._write(P.encode(self.s.config, self._next_seq())):
            self.config_sent_s = now

    def send_command(self, left: float, right: float) -> int | None:
        """Send a motor command (fractions in [-1, 1], finite: the caller checks). Returns its seq, or None
        when the link is down (nothing sent)."""
        if self.port is None:
            return None
        seq = self._next_seq()
        if self._write(P.encode(P.MotorCommand.from_fractions(left, right), seq)):
            self.counters.commands_sent += 1
            return seq
        return None

    # --- receiving ------------------------------------------------------------------------------------------
    def poll(self) -> list:
        """Read what the port has, handle it, keep the link alive. Returns new TelemetrySamples."""
        now = self.clock()
        if self.port is None:
            if now >= self.next_attempt_s:
                self._open(now)
            return []
        samples = []
        try:
            waiting = self.port.in_waiting
            data = self.port.read(max(waiting, 1)) if waiting else b''
        except Exception as e:  # noqa: BLE001 - the device vanished (EIO on a closed pty, USB unplug)
            self._lost(now, f'read: {e}')
            return []
        if data:
            self.counters.bytes_received += len(data)
            corrupt = self.decoder.counters.corrupt
            for frame in self.decoder.feed(data):
                self._on_frame(frame, now, samples)
            self.counters.frames_corrupt += self.decoder.counters.corrupt - corrupt
        if self.state != 'down':
            quiet_since = self.last_valid_s if self.state == 'up' else self.opened_s
            if now - quiet_since > self.s.link_timeout_s:
                self._lost(now, f'no valid frame for {now - quiet_since:.2f} s (link_timeout_s '
                                f'{self.s.link_timeout_s:g})')
                return samples
            if self.config_acked is None and now - self.config_sent_s > self.s.config_retry_s:
                self._send_config(now)
            if now >= self.next_heartbeat_s:
                self.next_heartbeat_s = now + self.s.heartbeat_period_s
                hb = P.Heartbeat(int(now * 1e6) & 0xFFFFFFFF, 0)
                if self._write(P.encode(hb, self._next_seq())):
                    self.counters.heartbeats_sent += 1
        return samples

    def _on_frame(self, frame: P.Frame, now: float, samples: list) -> None:
        self.counters.frames_ok += 1
        gap = P.seq_gap(self.last_rx_seq, frame.seq)
        if gap > 1000:       # far backwards or a huge jump: the board restarted, not 1000 lost frames
            self.counters.seq_restarts += 1
        else:
            self.counters.frames_missing += gap
        self.last_rx_seq = frame.seq
        self.last_valid_s = now
        if self.state != 'up':
            if self.state == 'connecting' and self.counters.link_losses + self.counters.reconnects > 0:
                self.counters.reconnects += 1
            self.state = 'up'
            self.backoff_s = self.s.reconnect_backoff_s
            self.log('info', f'link up on {self.s.port}')
        if frame.type == P.TELEMETRY:
            t = frame.message
            self.counters.telemetry += 1
            stopped = bool(t.status & P.STATUS_WATCHDOG_STOPPED)
            if stopped and not self._watchdog_seen:
                self.counters.device_watchdog_stops += 1
            self._watchdog_seen = stopped
            sample = TelemetrySample(self.device_clock.to_host(t.device_time_us, now), now, t)
            self.latest = sample
            samples.append(sample)
        elif frame.type == P.HEARTBEAT:
            hb = frame.message
            rtt = ((int(now * 1e6) - hb.host_time_us) & 0xFFFFFFFF) * 1e-6
            if rtt < 10.0:
                self.rtt_s = rtt
                self.rtt_samples.append(rtt)
                self.counters.heartbeats_answered += 1
        elif frame.type == P.CONFIG_ACK:
            self.config_acked = frame.message
            self.log('info', f'device applied config {asdict(self.config_acked)}')

    def summary(self) -> dict:
        """Counters and link state as plain values (the follow report's `link` object)."""
        out = asdict(self.counters)
        out.update(state=self.state, port=self.s.port, baud=self.s.baud, last_error=self.last_error,
                   rtt_ms_last=None if math.isnan(self.rtt_s) else self.rtt_s * 1e3,
                   rtt_ms_mean=(sum(self.rtt_samples) / len(self.rtt_samples) * 1e3) if self.rtt_samples else None)
        return out
