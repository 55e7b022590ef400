"""The storage of one RING site: its servers, storage nodes and disks, and the objects on them.

Each site's sproxyd process owns its site's store (nothing else writes into it), so the store
needs only an in-process lock. Objects are real files::

    <state>/sites/<site>/catalog/<KEY>.json              what the site must hold (size, sha256, usermd)
    <state>/sites/<site>/nodes/<node>/<disk>/<KEY>       one replica
    <state>/sites/<site>/outbox/<peer-site>/<KEY>        an operation the peer site has not seen yet

Placement: a class-3 RING stretched over two sites keeps four copies, two per site. Within a
site the ``copies`` replicas of a key go to the nodes that rank highest for that key
(rendezvous hashing, so placement is stable and spread); on a node, to its first disk in
service. A replica that cannot be written (node down) or read (node down, disk out of
service) is *missing*: the rebuild backlog counts missing replicas plus operations queued for
an unreachable peer site; :meth:`SiteStore.rebuild_once` repairs them when it can, which drains
the backlog once nodes return.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lab.scality.faults import FaultStore

KEY_RE = re.compile(r"^[0-9A-Fa-f]{40}$")


class NotFound(Exception):
    """No replica of the key is readable anywhere this site can reach."""


class Unavailable(Exception):
    """The operation could not store or reach any replica."""


class PeerUnavailable(Exception):
    """A peer site did not answer (network cut, site down, error)."""


class Peer(Protocol):
    """Another site's store, as this site reaches it (over HTTP in the emulator)."""

    def put(self, key: str, data: bytes, meta: dict[str, Any]) -> None: ...

    def get(self, key: str) -> tuple[bytes, dict[str, Any]] | None: ...

    def delete(self, key: str) -> None: ...


@dataclass
class Disk:
    name: str
    server: str
    size: int


@dataclass
class Node:
    name: str
    server: str
    disks: list[Disk]
    admin_port: int


@dataclass
class Server:
    id: str
    name: str
    ip: str
    nodes: list[Node] = field(default_factory=list)
    disks: list[Disk] = field(default_factory=list)


def build_layout(site: str, site_index: int, servers: int, disks_per_server: int, disk_size: int) -> list[Server]:
    """Deterministic names: ``<site>-store<i>`` servers, one ``<site>-node<i>`` each, ``-disk<j>``."""
    layout = []
    for i in range(1, servers + 1):
        sid = f"{site}-store{i}"
        # Data only, never contacted: storage servers have no lab host of their own.
        server = Server(id=sid, name=sid, ip=f"127.10.{site_index}.{100 + i}")
        server.disks = [Disk(f"{sid}-disk{j}", sid, disk_size) for j in range(1, disks_per_server + 1)]
        server.nodes = [Node(f"{site}-node{i}", sid, server.disks, 8084)]
        layout.append(server)
    return layout


def _rank(key: str, names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: hashlib.sha256(f"{key}/{n}".encode()).digest())


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class SiteStore:
    """One site's share of the RING."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        site: str,
        *,
        faults: FaultStore,
        ring: str = "DATA",
        servers: int = 3,
        disks_per_server: int = 2,
        copies: int = 2,
        disk_size: int = 1 << 30,
        site_index: int | None = None,
        peers: dict[str, Peer] | None = None,
    ) -> None:
        if copies > servers:
            raise ValueError("a site cannot keep more copies than it has storage nodes")
        self.site = site
        self.ring = ring
        self.copies = copies
        self.faults = faults
        self.peers: dict[str, Peer] = dict(peers or {})
        if site_index is None:
            digits = re.sub(r"\D", "", site)
            site_index = int(digits) if digits else 0
        self.layout = build_layout(site, site_index, servers, disks_per_server, disk_size)
        self.nodes = {n.name: n for s in self.layout for n in s.nodes}
        self.root = Path(state_dir) / "sites" / site
        self.catalog_dir = self.root / "catalog"
        self.outbox_dir = self.root / "outbox"
        self.catalog_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    # -- placement --------------------------------------------------------------------------
    def placement(self, key: str) -> list[Node]:
        return [self.nodes[n] for n in _rank(key, list(self.nodes))[: self.copies]]

    def _replica_paths(self, node: Node, key: str, faults: dict[str, Any]) -> list[Path]:
        """Readable places of the key on a node (empty if the node is down)."""
        if node.name in faults["nodes_down"]:
            return []
        paths = []
        for disk in node.disks:
            if disk.name in faults["disks_out"]:
                continue
            p = self.root / "nodes" / node.name / disk.name / key
            if p.exists():
                paths.append(p)
        return paths

    def _write_replica(self, node: Node, key: str, data: bytes, faults: dict[str, Any]) -> bool:
        if node.name in faults["nodes_down"]:
            return False
        for disk in sorted(node.disks, key=lambda d: _rank(key, [x.name for x in node.disks]).index(d.name)):
            if disk.name not in faults["disks_out"]:
                _atomic_write(self.root / "nodes" / node.name / disk.name / key, data)
                return True
        return False

    def _remove_replicas(self, key: str) -> None:
        for node in self.nodes.values():
            for disk in node.disks:
                (self.root / "nodes" / node.name / disk.name / key).unlink(missing_ok=True)

    # -- local operations (what a peer site asks of this one) -------------------------------
    def put_local(self, key: str, data: bytes, meta: dict[str, Any]) -> int:
        faults = self.faults.read()
        with self._lock:
            stored = sum(self._write_replica(n, key, data, faults) for n in self.placement(key))
            _atomic_write(self.catalog_dir / f"{key}.json", json.dumps(meta).encode())
            return stored

    def meta_local(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.catalog_dir / f"{key}.json").read_text())
        except FileNotFoundError:
            return None

    def get_local(self, key: str) -> tuple[bytes, dict[str, Any]] | None:
        faults = self.faults.read()
        meta = self.meta_local(key)
        if meta is None:
            return None
        # Placement first, then anywhere on the site (a rebuilt replica may sit elsewhere).
        order = self.placement(key) + [n for n in self.nodes.values() if n not in self.placement(key)]
        for node in order:
            for path in self._replica_paths(node, key, faults):
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() == meta["sha256"]:
                    return data, meta
        return None

    def delete_local(self, key: str) -> bool:
        with self._lock:
            existed = (self.catalog_dir / f"{key}.json").exists()
            (self.catalog_dir / f"{key}.json").unlink(missing_ok=True)
            self._remove_replicas(key)
            return existed

    # -- connector operations (what sproxyd does for a client) ------------------------------
    def put(self, key: str, data: bytes, usermd: str | None) -> int:
        """Store locally and on every peer site; returns the number of copies written now."""
        meta = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "usermd": usermd, "mtime": time.time()}
        stored = self.put_local(key, data, meta)
        for name, peer in self.peers.items():
            try:
                peer.put(key, data, meta)
                stored += self.copies
            except PeerUnavailable:
                self._queue(name, key, "put")
        if stored == 0:
            raise Unavailable(f"no replica of {key} could be written")
        return stored

    def get(self, key: str) -> tuple[bytes, dict[str, Any]]:
        local = self.get_local(key)
        if local is not None:
            return local
        known_here = self.meta_local(key) is not None
        for peer in self.peers.values():
            try:
                found = peer.get(key)
            except PeerUnavailable:
                continue
            if found is not None:
                return found
        if known_here:
            raise Unavailable(f"{key} is known but no replica is readable")
        raise NotFound(key)

    def delete(self, key: str) -> bool:
        existed = self.delete_local(key)
        for name, peer in self.peers.items():
            try:
                peer.delete(key)
            except PeerUnavailable:
                self._queue(name, key, "delete")
        return existed

    # -- rebuild ----------------------------------------------------------------------------
    def _queue(self, peer: str, key: str, op: str) -> None:
        _atomic_write(self.outbox_dir / peer / key, op.encode())

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.catalog_dir.glob("*.json"))

    def missing_replicas(self, faults: dict[str, Any] | None = None) -> list[tuple[str, Node]]:
        faults = faults or self.faults.read()
        return [(k, n) for k in self.keys() for n in self.placement(k) if not self._replica_paths(n, k, faults)]

    def outbox(self) -> dict[str, int]:
        if not self.outbox_dir.exists():
            return {}
        return {p.name: sum(1 for _entry in p.iterdir()) for p in self.outbox_dir.iterdir() if p.is_dir()}

    def rebuild_once(self, limit: int = 500) -> int:
        """Repair what can be repaired now; returns the number of operations completed."""
        faults = self.faults.read()
        if self.site in faults["sites_down"]:
            return 0
        done = 0
        for key, node in self.missing_replicas(faults)[:limit]:
            source = self.get_local(key)
            if source is None:
                for peer in self.peers.values():
                    try:
                        source = peer.get(key)
                    except PeerUnavailable:
                        continue
                    if source is not None:
                        break
            with self._lock:
                if source is not None and self.meta_local(key) is not None:
                    done += self._write_replica(node, key, source[0], faults)
        for peer_name, count in self.outbox().items():
            peer = self.peers.get(peer_name)
            if peer is None or not count:
                continue
            for entry in sorted((self.outbox_dir / peer_name).iterdir())[:limit]:
                try:
                    if entry.read_text() == "delete":
                        peer.delete(entry.name)
                    else:
                        local = self.get_local(entry.name)
                        if local is not None:
                            peer.put(entry.name, *local)
                except PeerUnavailable:
                    break
                except FileNotFoundError:
                    continue
                entry.unlink(missing_ok=True)
                done += 1
        return done

    # -- reporting (what the Supervisor aggregates) -----------------------------------------
    def report(self) -> dict[str, Any]:
        faults = self.faults.read()
        missing = self.missing_replicas(faults)
        used_by_disk: dict[str, int] = {}
        for node in self.nodes.values():
            for disk in node.disks:
                ddir = self.root / "nodes" / node.name / disk.name
                used_by_disk[disk.name] = sum(p.stat().st_size for p in ddir.iterdir()) if ddir.exists() else 0
        servers = []
        for s in self.layout:
            servers.append(
                {
                    "id": s.id,
                    "name": s.name,
                    "ip": s.ip,
                    "nodes": [
                        {
                            "name": n.name,
                            "admin_port": n.admin_port,
                            "up": n.name not in faults["nodes_down"],
                            "nb_chunks": sum(
                                1
                                for d in n.disks
                                if (self.root / "nodes" / n.name / d.name).exists()
                                for _chunk in (self.root / "nodes" / n.name / d.name).iterdir()
                            ),
                        }
                        for n in s.nodes
                    ],
                    "disks": [
                        {
                            "name": d.name,
                            "size": d.size,
                            "used": used_by_disk[d.name],
                            "in_service": d.name not in faults["disks_out"],
                        }
                        for d in s.disks
                    ],
                }
            )
        keys = self.keys()
        return {
            "site": self.site,
            "ring": self.ring,
            "copies": self.copies,
            "servers": servers,
            "objects": len(keys),
            "bytes_stored": sum(self.meta_local(k)["size"] for k in keys if self.meta_local(k)),
            "missing_replicas": len(missing),
            "outbox": self.outbox(),
            "injected_backlog": faults["backlog"].get(self.site, 0),
        }

    def reset(self) -> None:
        with self._lock:
            shutil.rmtree(self.root, ignore_errors=True)
            self.catalog_dir.mkdir(parents=True, exist_ok=True)
