"""Two hosts on one machine: a robot and a workstation network namespace joined by a veth pair.

    robot namespace                                          workstation namespace
    app (10.213.0.1/30) == veth == rly   [relay]   wire == veth pair == wire (10.213.0.2/30)

The pair `wire` <-> `wire` joins the two namespaces (the Wi-Fi of a real robot). The robot's stack sits behind
an inner veth pair (`app`, with the robot's address, and `rly`), and `mbmf_ros.link.relay` bridges `rly` and
`wire` in the robot namespace: every frame between the hosts passes the relay, which adds the latency, jitter
and loss asked for (none by default). Loopback is up in both; there is no default route and no link to the
machine's own network, so discovery (ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET) reaches exactly the other namespace.

`LinkedHosts.create()` makes all of it and `destroy()` removes exactly what it created: the two namespaces it
named (deleting a namespace deletes the interfaces inside it) and the relay it started. Needs root
(CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW); `NamespaceError` says why when that is missing. No ROS here.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mbmf_ros.link.relay import LinkSettings

ROBOT_ADDRESS = '10.213.0.1'
WORKSTATION_ADDRESS = '10.213.0.2'
PREFIX = 30


class NamespaceError(RuntimeError):
    """Network namespaces cannot be made here (not root, no `ip`, a kernel without netns): the reason."""


def _ip(*args: str, netns: str | None = None) -> subprocess.CompletedProcess:
    cmd = ['ip'] + (['-n', netns] if netns else []) + list(args)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NamespaceError('the `ip` command (iproute2) is not installed') from None
    if res.returncode != 0:
        raise NamespaceError(f'`{" ".join(cmd)}` failed: {res.stderr.strip() or res.stdout.strip()}')
    return res


# ETHTOOL_STXCSUM through SIOCETHTOOL (no ethtool binary needed): run inside the interface's namespace.
_TX_CHECKSUM_OFF = (
    "import ctypes, fcntl, socket, struct, sys\n"
    "sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "for dev in sys.argv[1:]:\n"
    "    value = ctypes.create_string_buffer(struct.pack('II', 0x17, 0))   # ETHTOOL_STXCSUM, off\n"
    "    fcntl.ioctl(sock.fileno(), 0x8946, struct.pack('16sP', dev.encode(), ctypes.addressof(value)))\n")


def _tx_checksum_off(netns: str, *devs: str) -> None:
    """Let the kernel finish UDP checksums before a frame leaves `devs`: a veth hands frames on with the checksum
    left for the (absent) hardware, and the relay copies bytes, so the far side would drop them as corrupt."""
    res = subprocess.run(['ip', 'netns', 'exec', netns, sys.executable, '-c', _TX_CHECKSUM_OFF, *devs],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise NamespaceError(f'turning off tx checksum offload of {", ".join(devs)} in {netns} failed: '
                             f'{res.stderr.strip()}')


def _sysctl(netns: str, key: str, value: str) -> None:
    path = '/proc/sys/' + key.replace('.', '/')
    res = subprocess.run(['ip', 'netns', 'exec', netns, 'sh', '-c', f'echo {value} > {path}'],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise NamespaceError(f'setting {key}={value} in {netns} failed: {res.stderr.strip()}')


@dataclass
class LinkedHosts:
    """The robot and workstation namespaces of one test run, and the relay between them."""
    robot_ns: str
    workstation_ns: str
    settings_file: Path
    relay_log: Path
    relay: subprocess.Popen | None = None
    created: list = field(default_factory=list)      # namespaces this object made, in order

    @classmethod
    def create(cls, tag: str | None = None, settings: LinkSettings | None = None,
               log_dir: str | os.PathLike | None = None) -> 'LinkedHosts':
        """Make both namespaces, the links and the relay. Names are unique per call (pid and a random tag), so
        parallel runs never meet. On any failure, what was made so far is removed and NamespaceError raised."""
        tag = tag or f'{os.getpid()}-{secrets.token_hex(3)}'
        log_dir = Path(log_dir or tempfile.mkdtemp(prefix='mbmf_link_'))
        hosts = cls(f'mbmf-robot-{tag}', f'mbmf-ws-{tag}', log_dir / 'link.json', log_dir / 'relay.log')
        try:
            hosts._build(settings or LinkSettings())
        except BaseException:
            hosts.destroy()
            raise
        return hosts

    def _build(self, settings: LinkSettings) -> None:
        for ns in (self.robot_ns, self.workstation_ns):
            _ip('netns', 'add', ns)
            self.created.append(ns)
        r, w = self.robot_ns, self.workstation_ns
        # Made inside the namespaces at once: nothing ever appears in the machine's own namespace.
        _ip('link', 'add', 'wire', 'netns', r, 'type', 'veth', 'peer', 'name', 'wire', 'netns', w)
        _ip('link', 'add', 'app', 'netns', r, 'type', 'veth', 'peer', 'name', 'rly', 'netns', r)
        for ns in (r, w):
            _sysctl(ns, 'net.ipv6.conf.all.disable_ipv6', '1')    # DDS here is IPv4; keep the link quiet
            _sysctl(ns, 'net.ipv6.conf.default.disable_ipv6', '1')
            _ip('link', 'set', 'lo', 'up', netns=ns)
        # The relay's interfaces carry no address and must never answer for the robot's one themselves.
        for name in ('rly', 'wire'):
            _sysctl(r, f'net.ipv4.conf.{name}.arp_ignore', '8')
        _tx_checksum_off(r, 'app')
        _tx_checksum_off(w, 'wire')
        _ip('addr', 'add', f'{ROBOT_ADDRESS}/{PREFIX}', 'dev', 'app', netns=r)
        _ip('addr', 'add', f'{WORKSTATION_ADDRESS}/{PREFIX}', 'dev', 'wire', netns=w)
        for ns, dev in ((r, 'app'), (r, 'rly'), (r, 'wire'), (w, 'wire')):
            _ip('link', 'set', dev, 'up', netns=ns)
        # Fast DDS sends its multicast discovery where the routing table says; the subnet's own interface, and
        # nothing else: there is no default route.
        _ip('route', 'add', '224.0.0.0/4', 'dev', 'app', netns=r)
        _ip('route', 'add', '224.0.0.0/4', 'dev', 'wire', netns=w)
        self.start_relay(settings)

    def start_relay(self, settings: LinkSettings) -> None:
        settings.write(self.settings_file)
        log = open(self.relay_log, 'a')
        self.relay = subprocess.Popen(
            ['ip', 'netns', 'exec', self.robot_ns, sys.executable, '-m', 'mbmf_ros.link.relay', 'rly', 'wire',
             '--delay-ms', str(settings.delay_ms), '--jitter-ms', str(settings.jitter_ms), '--loss',
             str(settings.loss), '--settings', str(self.settings_file)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def set_link(self, settings: LinkSettings) -> None:
        """Change the link's latency, jitter, loss or cut it (settings.cut), effective at once."""
        settings.write(self.settings_file)
        self.relay.send_signal(signal.SIGHUP)

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        """argv run inside the robot's or the workstation's namespace."""
        ns = {'robot': self.robot_ns, 'workstation': self.workstation_ns}[host]
        return ['ip', 'netns', 'exec', ns] + list(argv)

    @staticmethod
    def ros_env(env: dict, domain_id: int | str) -> dict:
        """Environment for ROS processes on either host: discovery over the subnet (the link), UDP only.

        Fast DDS would otherwise carry traffic between the hosts through shared memory (both namespaces share
        /dev/shm on one machine), behind the link's back; two real hosts have no shared memory anyway."""
        env = dict(env)
        env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET',
                   FASTDDS_BUILTIN_TRANSPORTS='UDPv4')
        env.pop('ROS_STATIC_PEERS', None)
        env.pop('ROS_LOCALHOST_ONLY', None)
        return env

    def destroy(self) -> None:
        """Stop the relay and delete the namespaces this object made (only those). Processes started inside
        the namespaces must be stopped by their starter first."""
        if self.relay is not None and self.relay.poll() is None:
            self.relay.send_signal(signal.SIGINT)
            try:
                self.relay.wait(5)
            except subprocess.TimeoutExpired:
                self.relay.kill()
                self.relay.wait()
        errors = []
        for ns in reversed(self.created):
            res = subprocess.run(['ip', 'netns', 'delete', ns], capture_output=True, text=True, timeout=30)
            if res.returncode != 0:
                errors.append(f'{ns}: {res.stderr.strip()}')
        self.created.clear()
        if errors:
            raise NamespaceError('could not delete ' + '; '.join(errors))


def namespaces_available() -> str | None:
    """None when network namespaces can be made here; else the reason they cannot."""
    if os.geteuid() != 0:
        return 'network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN); this runs as uid ' \
               f'{os.geteuid()}'
    probe = f'mbmf-probe-{os.getpid()}-{secrets.token_hex(3)}'
    try:
        _ip('netns', 'add', probe)
    except NamespaceError as e:
        return str(e)
    subprocess.run(['ip', 'netns', 'delete', probe], capture_output=True, timeout=30)
    return None
