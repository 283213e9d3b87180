"""An emulated VelociRoACH for the serial link (ROS-free): a motor board on a pseudo-terminal whose physics is the
MuJoCo hexapod, running in real time, plus the poses a motion-capture system would deliver.

    emu = RobotEmulator(load_emulator_config(), link_path='/tmp/robot', on_mocap=publish)
    path = emu.start()          # the pty device (link_path, when given, is a symlink to it, kept across re-plugs)
    ...
    emu.reset()                 # the operator puts the robot back: a new noisy start pose
    emu.disconnect(2.0)         # the cable is pulled for 2 s (the pty disappears, then a new one appears)
    emu.stop()

The board is ``device.DeviceBoard`` (the Python twin of firmware/mbmf_device.c): commands set both sides'
setpoints (mixed as the simulated robot's board mixes them), its watchdog zeroes them when commands stop,
telemetry goes out at the configured rate with sensor noise. The line between host and board has the
throughput of the baud rate, a latency, and byte drops and corruption (the robot_emulator section of config/defaults.yaml). Physics advances in
1 ms steps tied to the wall clock; ``stats()`` tells what happened (injected faults included).
"""
from __future__ import annotations

import collections
import math
import os
import queue
import select
import threading
import time
import tty

import mujoco
import numpy as np

from mbmf_ros.io.yaml_files import read_yaml_mapping

from . import protocol as P
from .device import DeviceBoard

# key -> (type, low, high)
KEYS = {
    'agent': (str, None, None), 'seed': (int, 0, None), 'baud': (int, 300, 4_000_000),
    'latency_ms': (float, 0.0, 10_000.0), 'byte_corruption_rate': (float, 0.0, 1.0),
    'byte_drop_rate': (float, 0.0, 1.0), 'command_timeout_ms': (int, 20, 5000),
    'telemetry_rate_hz': (int, 1, 200), 'gyro_noise_rad_s': (float, 0.0, None),
    'accel_noise_m_s2': (float, 0.0, None), 'speed_noise_rad_s': (float, 0.0, None),
    'back_emf_v_per_rad_s': (float, 0.0, None), 'battery_full_v': (float, 0.0, 30.0),
    'battery_drain_v_per_min': (float, 0.0, None), 'low_battery_v': (float, 0.0, 30.0),
    'mocap_rate_hz': (float, 1.0, 1000.0), 'mocap_noise_m': (float, 0.0, None),
    'mocap_noise_rad': (float, 0.0, None), 'mocap_latency_ms': (float, 0.0, 10_000.0),
    'mocap_dropout_rate': (float, 0.0, 1.0),
}


def load_emulator_config(path: str | os.PathLike | None = None, base: dict | None = None) -> dict:
    """The emulator's settings: ``base`` (the robot_emulator node's parameters; default: its section of
    config/defaults.yaml with the /** agent, mbmf_ros.settings), overridden by the keys of the YAML file
    ``path`` (a fault file: ``byte_drop_rate: 0.01``, ...). Only the keys of ``KEYS`` are taken from ``base``.
    ValueError naming the file, key, expected and found value for an unknown key, a wrong type or a value out of
    range."""
    if base is None:
        from mbmf_ros.settings import config_dir, defaults
        base, base_source = defaults('robot_emulator'), config_dir() / 'defaults.yaml'
    else:
        base_source = 'robot_emulator parameters'
    sources = [(base_source, {k: v for k, v in base.items() if k in KEYS})]
    if path:
        sources.append((path, read_yaml_mapping(path, 'emulator config', 'a mapping of keys to values')))
    config = {}
    for source, values in sources:
        for key, value in values.items():
            if key not in KEYS:
                raise ValueError(f'emulator config {source}: unknown key {key!r}; known keys: {", ".join(KEYS)}')
            kind, low, high = KEYS[key]
            try:
                if kind is int and (isinstance(value, bool) or float(value) != int(value)):
                    raise ValueError
                value = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f'emulator config {source}: {key}: expected {kind.__name__}, '
                                 f'found {value!r}') from None
            if kind is not str and ((low is not None and value < low) or (high is not None and value > high)):
                raise ValueError(f'emulator config {source}: {key}: expected in [{low}, {high}], found {value}')
            config[key] = value
    missing = sorted(set(KEYS) - set(config))
    if missing:
        raise ValueError(f'emulator config {base_source}: missing keys {", ".join(missing)}')
    return config


class FaultyLine:
    """One direction of the serial line: baud/10 bytes per second, a latency, byte drops and corruption.

    Counts what it injects: bytes, and frames (up to and including their 0x00 delimiter) damaged by at least one
    dropped or corrupted byte: the frames a correct receiver cannot get."""

    def __init__(self, baud: int, latency_s: float, corruption_rate: float, drop_rate: float, rng):
        self.byte_time = 10.0 / baud
        self.latency = latency_s
        self.corruption, self.drop = corruption_rate, drop_rate
        self.rng = rng
        self.queue = collections.deque()      # (arrival time, bytes)
        self.free_at = 0.0
        self.frame_damaged = False
        self.counters = {'bytes': 0, 'bytes_corrupted': 0, 'bytes_dropped': 0, 'frames': 0, 'frames_damaged': 0}

    def send(self, data: bytes, now: float) -> None:
        if not data:
            return
        n = len(data)
        start = max(now, self.free_at)
        self.free_at = start + n * self.byte_time
        out = np.frombuffer(data, dtype=np.uint8).copy()
        keep = np.ones(n, dtype=bool)
        damaged = np.zeros(n, dtype=bool)
        if self.corruption > 0:
            hit = self.rng.random(n) < self.corruption
            out[hit] ^= self.rng.integers(1, 256, int(hit.sum()), dtype=np.uint8)   # never the same value
            damaged |= hit
            self.counters['bytes_corrupted'] += int(hit.sum())
        if self.drop > 0:
            lost = self.rng.random(n) < self.drop
            keep &= ~lost
            damaged |= lost
            self.counters['bytes_dropped'] += int(lost.sum())
        self.counters['bytes'] += n
        original = np.frombuffer(data, dtype=np.uint8)
        for i in np.flatnonzero(damaged | (original == 0)):      # only delimiters and damage need a look
            self.frame_damaged |= bool(damaged[i])
            if original[i] == 0:
                self.counters['frames'] += 1
                self.counters['frames_damaged'] += int(self.frame_damaged)
                self.frame_damaged = False
        self.queue.append((self.free_at + self.latency, out[keep].tobytes()))

    def due(self, now: float) -> bytes:
        out = b''
        while self.queue and self.queue[0][0] <= now:
            out += self.queue.popleft()[1]
        return out

    def next_due(self) -> float:
        return self.queue[0][0] if self.queue else math.inf

    def clear(self) -> None:
        self.queue.clear()


def _small_rotation(q: np.ndarray, std: float, rng) -> np.ndarray:
    """q (w, x, y, z) rotated by a random small rotation of std ``std`` rad about each axis."""
    if std <= 0:
        return q
    v = rng.normal(0.0, std, 3)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return q
    dq = np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * v / angle])
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, dq, q)
    return out / np.linalg.norm(out)


class RobotEmulator:
    """The emulated robot. on_mocap(stamp_wall_s, position (3,) m, quaternion (4,) w-x-y-z): called from the
    emulator's thread when a mocap frame is due (stamped with its capture time, delivered latency later)."""

    def __init__(self, config: dict, link_path: str | None = None, on_mocap=None, log=None):
        from mbmf_ros.core.agents import get_agent
        from mbmf_ros.sim.simulation import Simulation
        self.c = config
        self.spec = get_agent(config['agent'])
        if self.spec.action_dim != 2 or len(self.spec.joints) != 2:
            raise ValueError(f'emulator: agent {self.spec.name} is not a two-motor robot (the board drives two)')
        self.sim = Simulation(self.spec, max_episode_steps=0, seed=config['seed'])
        self.sim.reset()
        self.rng = np.random.default_rng(config['seed'] + 7919)
        self.link_path = link_path
        self.on_mocap = on_mocap or (lambda *a: None)
        self.log = log or (lambda level, text: None)
        self.board = DeviceBoard(config['command_timeout_ms'], config['telemetry_rate_hz'])
        lat = config['latency_ms'] * 1e-3
        faults = (config['byte_corruption_rate'], config['byte_drop_rate'])
        self.to_host = FaultyLine(config['baud'], lat, *faults, self.rng)
        self.to_device = FaultyLine(config['baud'], lat, *faults, self.rng)
        m = self.sim.model
        self.ts = m.opt.timestep
        self.crank_adr = [m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j.mujoco_joint)]
                          for j in self.spec.joints]
        self.gyro_adr = m.sensor_adr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, 'gyro')]
        self.accel_adr = m.sensor_adr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, 'accelerometer')]
        self.master = self.slave = None
        self.path = None
        self.requests = queue.Queue()
        self.thread = None
        self.running = False
        self.episode = 0
        self.stats_lock = threading.Lock()
        self.counts = {'physics_steps': 0, 'telemetry_sent': 0, 'mocap_published': 0, 'mocap_dropped': 0,
                       'overruns': 0, 'disconnects': 0, 'resets': 0, 'max_abs_setpoint': 0,
                       'unplug_to_stop_ms': -1.0}
        self.pending_mocap = collections.deque()

    # --- the pseudo-terminal --------------------------------------------------------------------------------
    def _open_pty(self) -> str:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)          # no echo, no line editing: a plain byte pipe like a UART
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        if self.link_path:
            tmp = f'{self.link_path}.tmp{os.getpid()}'
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.path, tmp)
            os.replace(tmp, self.link_path)
        return self.path

    def _close_pty(self) -> None:
        if self.link_path and os.path.islink(self.link_path):
            os.unlink(self.link_path)
        for fd in (self.master, self.slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self.slave = None

    # --- control from other threads -------------------------------------------------------------------------
    def start(self) -> str:
        path = self._open_pty()
        self.running = True
        self.thread = threading.Thread(target=self._loop, name='robot-emulator', daemon=True)
        self.thread.start()
        return path

    def stop(self) -> None:
        self.running = False
        if self.thread is not None:
            self.thread.join(timeout=5.0)
        self._close_pty()

    def _request(self, kind, arg, timeout=5.0):
        done = threading.Event()
        box = {}
        self.requests.put((kind, arg, done, box))
        if not done.wait(timeout):
            raise TimeoutError(f'emulator: {kind} not done in {timeout} s')
        return box.get('result')

    def reset(self, seed: int | None = None) -> int:
        """The operator puts the robot back (a new noisy start pose, as the simulator's reset). Returns the
        episode number."""
        return self._request('reset', seed)

    def disconnect(self, duration_s: float) -> None:
        """Pull the cable: the pty (and the link_path symlink) disappear; a new one appears after duration_s."""
        self._request('disconnect', duration_s)

    def stats(self) -> dict:
        with self.stats_lock:
            out = dict(self.counts)
        b = self.board
        out.update(episode=self.episode, device_commands=b.commands, device_watchdog_stops=b.watchdog_stops,
                   device_frames_ok=b.decoder.counters.ok, device_frames_corrupt=b.decoder.counters.corrupt,
                   setpoints=list(b.setpoints), watchdog_stopped=b.watchdog_stopped, port=self.path,
                   to_host={k: v for k, v in self.to_host.counters.items()},
                   to_device={k: v for k, v in self.to_device.counters.items()})
        return out

    # --- the loop -------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        c, m, d = self.c, self.sim.model, self.sim.data
        t0 = time.monotonic()
        wall0 = time.time() - t0            # monotonic -> wall clock (ROS stamps)
        steps = 0
        reconnect_at = None
        unplugged_at, stops_at_unplug = None, 0
        gyro_sum, gyro_n = np.zeros(3), 0
        prev_angles = [float(d.qpos[a]) for a in self.crank_adr]
        prev_t = t0
        next_mocap = t0
        mocap_period = 1.0 / c['mocap_rate_hz']
        drain = c['battery_drain_v_per_min'] / 60.0
        while self.running:
            now = time.monotonic()
            while not self.requests.empty():
                kind, arg, done, box = self.requests.get()
                if kind == 'reset':
                    self.sim.reset(seed=arg)
                    self.episode += 1
                    prev_angles = [float(d.qpos[a]) for a in self.crank_adr]
                    gyro_sum[:], gyro_n = 0.0, 0
                    with self.stats_lock:
                        self.counts['resets'] += 1
                    box['result'] = self.episode
                elif kind == 'disconnect':
                    self._close_pty()
                    self.to_host.clear()
                    self.to_device.clear()
                    reconnect_at = now + float(arg)
                    unplugged_at, stops_at_unplug = now, self.board.watchdog_stops
                    with self.stats_lock:
                        self.counts['disconnects'] += 1
                    self.log('warn', f'link disconnected for {float(arg):.2f} s')
                done.set()
            if reconnect_at is not None and now >= reconnect_at:
                reconnect_at = None
                self.log('info', f'link back on {self._open_pty()}')
            # serial in: what the host wrote crosses the line, then reaches the board
            if self.master is not None:
                try:
                    data = os.read(self.master, 4096)
                except BlockingIOError:
                    data = b''
                except OSError:
                    data = b''          # nobody has the terminal open
                self.to_device.send(data, now)
            # physics up to now, 1 ms at a time; the board's watchdog and telemetry at their microsecond times
            target = int((now - t0) / self.ts)
            if target - steps > 100:
                with self.stats_lock:
                    self.counts['overruns'] += 1
            while steps < target:
                t_step = t0 + steps * self.ts
                us = int((t_step - t0) * 1e6)
                arrived = self.to_device.due(t_step)
                if arrived:
                    self._transmit(self.board.receive(arrived, us), t_step)
                self.board.update(us)
                if unplugged_at is not None and self.board.watchdog_stops > stops_at_unplug:
                    with self.stats_lock:   # how long the motors ran on after the cable was pulled
                        self.counts['unplug_to_stop_ms'] = round((t_step - unplugged_at) * 1e3, 1)
                    unplugged_at = None
                left, right = self.board.setpoints
                with self.stats_lock:
                    self.counts['max_abs_setpoint'] = max(self.counts['max_abs_setpoint'], abs(left), abs(right))
                d.ctrl[:] = self.sim.motor_targets(np.array([left, right]) / P.SETPOINT_SCALE)
                mujoco.mj_step(m, d)
                steps += 1
                gyro_sum += d.sensordata[self.gyro_adr:self.gyro_adr + 3]
                gyro_n += 1
                t_now = t0 + steps * self.ts
                if self.board.telemetry_due(us):
                    self._transmit(self._telemetry(prev_angles, t_now - prev_t, gyro_sum / max(gyro_n, 1),
                                                      c['battery_full_v'] - drain * (t_now - t0), us), t_now)
                    prev_angles = [float(d.qpos[a]) for a in self.crank_adr]
                    prev_t = t_now
                    gyro_sum[:], gyro_n = 0.0, 0
                    with self.stats_lock:
                        self.counts['telemetry_sent'] += 1
                if t_now >= next_mocap:
                    next_mocap += mocap_period
                    if self.rng.random() < c['mocap_dropout_rate']:
                        with self.stats_lock:
                            self.counts['mocap_dropped'] += 1
                    else:
                        pos = d.xpos[self.sim.root] + self.rng.normal(0.0, c['mocap_noise_m'], 3)
                        quat = _small_rotation(d.xquat[self.sim.root].copy(), c['mocap_noise_rad'], self.rng)
                        self.pending_mocap.append((t_now + c['mocap_latency_ms'] * 1e-3, wall0 + t_now, pos, quat))
            with self.stats_lock:
                self.counts['physics_steps'] = steps
            while self.pending_mocap and self.pending_mocap[0][0] <= now:
                _, stamp, pos, quat = self.pending_mocap.popleft()
                self.on_mocap(stamp, pos, quat)
                with self.stats_lock:
                    self.counts['mocap_published'] += 1
            # serial out
            out = self.to_host.due(now)
            if out and self.master is not None:
                try:
                    os.write(self.master, out)
                except OSError:
                    pass                # the terminal's buffer is full or nobody listens: bytes are lost
            # sleep until the next thing to do (the next physics millisecond at the latest) or host bytes
            wake = min(t0 + (steps + 1) * self.ts, self.to_host.next_due(), self.to_device.next_due(),
                       self.pending_mocap[0][0] if self.pending_mocap else math.inf)
            delay = max(0.0, wake - time.monotonic())
            if self.master is not None:
                select.select([self.master], [], [], delay)
            else:
                time.sleep(delay)

    def _transmit(self, data: bytes, now: float) -> None:
        if self.master is not None:     # unplugged: the board's bytes go nowhere (its seq still counts up)
            self.to_host.send(data, now)

    def _telemetry(self, prev_angles, period_s, gyro, battery_v, us) -> bytes:
        c, d, rng = self.c, self.sim.data, self.rng
        angles = [float(d.qpos[a]) for a in self.crank_adr]
        speeds = [(a - p) / max(period_s, 1e-6) + rng.normal(0.0, c['speed_noise_rad_s'])
                  for a, p in zip(angles, prev_angles)]
        gyro = gyro + rng.normal(0.0, c['gyro_noise_rad_s'], 3)
        accel = d.sensordata[self.accel_adr:self.accel_adr + 3] + rng.normal(0.0, c['accel_noise_m_s2'], 3)

        def i16(v, lsb):
            return int(max(-32768, min(32767, round(v / lsb))))

        t = P.Telemetry(
            left_angle=int(round((angles[0] % (2 * math.pi)) * P.ANGLE_SCALE)) & 0xFFFF,
            right_angle=int(round((angles[1] % (2 * math.pi)) * P.ANGLE_SCALE)) & 0xFFFF,
            left_speed=i16(speeds[0], P.SPEED_LSB), right_speed=i16(speeds[1], P.SPEED_LSB),
            left_back_emf=i16(speeds[0] * c['back_emf_v_per_rad_s'], 0.001),
            right_back_emf=i16(speeds[1] * c['back_emf_v_per_rad_s'], 0.001),
            gyro_x=i16(gyro[0], P.GYRO_LSB), gyro_y=i16(gyro[1], P.GYRO_LSB), gyro_z=i16(gyro[2], P.GYRO_LSB),
            accel_x=i16(accel[0], P.ACCEL_LSB), accel_y=i16(accel[1], P.ACCEL_LSB), accel_z=i16(accel[2], P.ACCEL_LSB),
            battery_mv=int(max(0, min(65535, round(battery_v * 1000)))))
        return self.board.telemetry(t, battery_v < c['low_battery_v'], us)
