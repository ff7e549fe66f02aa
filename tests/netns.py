"""Network namespaces for the multi-host tests: a namespace per host, joined to this one by a
veth pair, and relays that let a host reach services listening on this namespace's 127.0.0.1.

A socket belongs to the namespace it was created in: a relay's listening socket is made by a
thread that first enters the host's namespace (setns changes the calling thread only), and the
connections it forwards are made from this namespace. Needs root on Linux and iproute2.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout}")
    return done


def wait_for(what: str, ready, timeout: float, every: float = 0.2) -> None:
    """Call `ready()` until it is true; RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(every)
    raise RuntimeError(f"{what}: not ready within {timeout:g} s")


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.213.x.0/29 no interface of this machine uses (two /30 links, one per host)."""
    used = run("ip", "-4", "-o", "addr").stdout
    for _ in range(100):
        third, fourth = secrets.randbelow(256), 8 * secrets.randbelow(32)
        net = ipaddress.ip_network(f"10.213.{third}.{fourth}/29")
        if not any(str(a) + "/" in used for a in net):
            return net
    raise RuntimeError("no free 10.213.x.y/29 subnet")


@dataclass
class Namespace:
    """A network namespace linked to this one by a veth pair: `link` here, eth0 inside."""

    name: str
    link: str  # the veth's name on this side
    network: ipaddress.IPv4Network  # a /30: this side's address, then the namespace's
    made: bool = False

    @property
    def outside(self) -> str:
        return str(list(self.network.hosts())[0])

    @property
    def inside(self) -> str:
        """The namespace's address (on its eth0)."""
        return str(list(self.network.hosts())[1])

    def create(self) -> None:
        bits = self.network.prefixlen
        run("ip", "netns", "add", self.name)
        self.made = True
        run("ip", "link", "add", self.link, "type", "veth", "peer", "name", "eth0",
            "netns", self.name)
        run("ip", "addr", "add", f"{self.outside}/{bits}", "dev", self.link)
        run("ip", "link", "set", self.link, "up")
        run("ip", "-n", self.name, "addr", "add", f"{self.inside}/{bits}", "dev", "eth0")
        run("ip", "-n", self.name, "link", "set", "eth0", "up")
        run("ip", "-n", self.name, "link", "set", "lo", "up")

    def pids(self) -> list[int]:
        done = run("ip", "netns", "pids", self.name, check=False)
        return [int(p) for p in done.stdout.split()]

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def unplug(self) -> None:
        """The host vanishes from the network: its end of the cable goes down."""
        run("ip", "-n", self.name, "link", "set", "eth0", "down")

    def plug(self) -> None:
        run("ip", "-n", self.name, "link", "set", "eth0", "up")

    def delete(self) -> None:
        if not self.made:
            return
        self.kill_all()
        wait_for(f"processes of {self.name} to end", lambda: not self.pids(), timeout=15)
        run("ip", "netns", "del", self.name, check=False)
        # Deleting the namespace deletes eth0 and so its peer; make sure of it.
        if run("ip", "link", "show", self.link, check=False).returncode == 0:
            run("ip", "link", "del", self.link, check=False)
        self.made = False


def listen_in(namespace: str, port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:port inside `namespace` (made by a thread that enters
    the namespace; setns changes only the calling thread's namespace)."""
    made: dict[str, object] = {}

    def enter_and_listen() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                made["error"] = OSError(ctypes.get_errno(), f"setns {namespace}")
                return
        finally:
            os.close(fd)
        try:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(128)
            made["socket"] = s
        except OSError as e:
            made["error"] = e

    thread = threading.Thread(target=enter_and_listen, name=f"setns-{namespace}")
    thread.start()
    thread.join(timeout=10)
    if "socket" not in made:
        raise RuntimeError(f"cannot listen in {namespace}:{port}: {made.get('error')}")
    return made["socket"]  # type: ignore[return-value]


class Relay:
    """Forwards connections to 127.0.0.1:port inside a namespace to `target` here."""

    def __init__(self, namespace: str, port: int, target: tuple[str, int]):
        self.listener = listen_in(namespace, port)
        self.target = target
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.thread = threading.Thread(target=self._accept, daemon=True,
                                       name=f"relay-{namespace}-{port}")
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                if self.closed.is_set():
                    client.close()
                    upstream.close()
                    return
                self.sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # One side ended: end both, as a cable would.
            with self.lock:
                for s in (source, sink):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.sockets.clear()
