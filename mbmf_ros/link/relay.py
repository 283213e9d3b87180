"""A bad network on purpose: a user-space Ethernet relay that delays, jitters and drops frames.

The kernel's netem qdisc is not available everywhere (not on these machines), so the link between the robot and
the workstation is degraded here instead: the relay reads every frame arriving on one interface with a raw
AF_PACKET socket and writes it out on the other after

    delay_ms + uniform(-jitter_ms, +jitter_ms)      (one way, each direction; never before an earlier frame:
                                                      like Wi-Fi, the link does not reorder)
    or drops it with probability loss               (independent per frame, both directions)

It is a layer-2 bridge: ARP, multicast discovery and unicast DDS traffic all cross it unchanged, so the DDS
stack on both sides sees a real (slow, lossy) Ethernet link. The two interfaces must carry no IP address (the
hosts' addresses live behind them). `python -m mbmf_ros.link.relay IF_A IF_B --delay-ms 50 --loss 0.01`; send
SIGHUP to re-read the settings from `--settings FILE` (JSON {delay_ms, jitter_ms, loss}, or {"cut": true} to
drop everything: the link cut), SIGINT/SIGTERM to stop. Needs CAP_NET_RAW (root). No ROS here.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4      # sll_pkttype of a frame this host sent: the relay's own writes, never relayed back
MAX_FRAME = 65536


@dataclass
class LinkSettings:
    """One direction's degradation (both directions use the same settings). Milliseconds; loss in [0, 1]."""
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    cut: bool = False

    def __post_init__(self):
        for name in ('delay_ms', 'jitter_ms'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value < 10_000):
                raise ValueError(f'link settings: {name} must be in [0, 10000) ms, found {value!r}')
        if not (isinstance(self.loss, (int, float)) and 0.0 <= self.loss <= 1.0):
            raise ValueError(f'link settings: loss must be a probability in [0, 1], found {self.loss!r}')
        if self.jitter_ms > self.delay_ms:
            raise ValueError(f'link settings: jitter_ms ({self.jitter_ms}) must not exceed delay_ms '
                             f'({self.delay_ms}): a frame cannot leave before it arrived')

    @classmethod
    def from_file(cls, path) -> 'LinkSettings':
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f'link settings file {path}: {e}') from None
        if not isinstance(data, dict) or set(data) - {'delay_ms', 'jitter_ms', 'loss', 'cut'}:
            raise ValueError(f'link settings file {path}: expected a mapping of delay_ms, jitter_ms, loss, cut; '
                             f'found {data!r}')
        return cls(**data)

    def write(self, path) -> None:
        tmp = Path(f'{path}.tmp')
        tmp.write_text(json.dumps(self.__dict__))
        tmp.replace(path)


class Direction:
    """Frames from one interface waiting to leave on the other: FIFO of (departure time, frame)."""

    def __init__(self, name: str, out: socket.socket, rng: random.Random):
        self.name, self.out, self.rng = name, out, rng
        self.queue: collections.deque = collections.deque()
        self.last_departure = 0.0
        self.frames = self.dropped = self.sent = 0

    def arrive(self, frame: bytes, now: float, settings: LinkSettings) -> None:
        self.frames += 1
        if settings.cut or (settings.loss > 0 and self.rng.random() < settings.loss):
            self.dropped += 1
            return
        delay = settings.delay_ms + (self.rng.uniform(-settings.jitter_ms, settings.jitter_ms)
                                     if settings.jitter_ms else 0.0)
        departure = max(now + delay * 1e-3, self.last_departure)   # no reordering
        self.last_departure = departure
        self.queue.append((departure, frame))

    def due(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            _, frame = self.queue.popleft()
            try:
                self.out.send(frame)
                self.sent += 1
            except OSError:          # the interface went down (a link cut with `ip link set down`): lost
                self.dropped += 1

    def next_departure(self):
        return self.queue[0][0] if self.queue else None


def open_raw(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, 0))
    sock.setblocking(False)
    return sock


def run_relay(if_a: str, if_b: str, settings: LinkSettings, settings_file: str | None = None,
              seed: int | None = None, log=sys.stderr) -> int:
    rng = random.Random(seed)
    sock_a, sock_b = open_raw(if_a), open_raw(if_b)
    directions = {sock_a.fileno(): (sock_a, Direction(f'{if_a}->{if_b}', sock_b, rng)),
                  sock_b.fileno(): (sock_b, Direction(f'{if_b}->{if_a}', sock_a, rng))}
    state = {'settings': settings, 'stop': False, 'reload': False}
    # A signal wakes the select at once (through this pipe): a link cut takes effect within a millisecond.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGHUP, lambda *_: state.update(reload=True))
    signal.signal(signal.SIGINT, lambda *_: state.update(stop=True))
    signal.signal(signal.SIGTERM, lambda *_: state.update(stop=True))
    print(f'relay {if_a} <-> {if_b}: {settings}', file=log, flush=True)
    while not state['stop']:
        if state['reload']:
            state['reload'] = False
            try:
                state['settings'] = LinkSettings.from_file(settings_file) if settings_file else state['settings']
                print(f'relay settings at {time.time():.6f}: {state["settings"]}', file=log, flush=True)
            except ValueError as e:
                print(f'relay: {e}; keeping {state["settings"]}', file=log, flush=True)
        now = time.monotonic()
        departures = [d.next_departure() for _, d in directions.values() if d.next_departure() is not None]
        timeout = max(0.0, min(departures) - now) if departures else 0.2
        try:
            readable, _, _ = select.select([sock_a, sock_b, wake_r], [], [], timeout)
        except InterruptedError:
            continue
        if wake_r in readable:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
            continue             # settings or stop first
        now = time.monotonic()
        for sock in readable:
            _, direction = directions[sock.fileno()]
            while True:
                try:
                    frame, address = sock.recvfrom(MAX_FRAME)
                except BlockingIOError:
                    break
                except OSError:
                    break
                if address[2] == PACKET_OUTGOING:
                    continue
                direction.arrive(frame, now, state['settings'])
        for _, direction in directions.values():
            direction.due(time.monotonic())
    for _, d in directions.values():
        print(f'relay {d.name}: {d.frames} frames, {d.sent} sent, {d.dropped} dropped', file=log, flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('if_a')
    parser.add_argument('if_b')
    parser.add_argument('--delay-ms', type=float, default=0.0, help='one-way added latency, ms')
    parser.add_argument('--jitter-ms', type=float, default=0.0, help='uniform +- jitter on the delay, ms')
    parser.add_argument('--loss', type=float, default=0.0, help='probability of dropping a frame')
    parser.add_argument('--settings', help='JSON file re-read on SIGHUP (written with these values at start)')
    parser.add_argument('--seed', type=int, default=None, help='seed of the loss and jitter draws')
    args = parser.parse_args(argv)
    try:
        settings = LinkSettings(args.delay_ms, args.jitter_ms, args.loss)
    except ValueError as e:
        print(f'relay: {e}', file=sys.stderr)
        return 2
    if args.settings:
        settings.write(args.settings)
    try:
        return run_relay(args.if_a, args.if_b, settings, args.settings, args.seed)
    except OSError as e:
        print(f'relay: cannot open raw sockets on {args.if_a} and {args.if_b}: {e} (needs root / CAP_NET_RAW)',
              file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
