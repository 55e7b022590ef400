"""The mailbox's message store, apart from any protocol: blobs in the site's object store
(sproxyd's HTTP API, or a local directory), metadata in SQLite on the DB volume, a small
per-account index on the index volume.

A delivery writes the blob first and commits the metadata after, so a message is either
listed and readable or absent; a failed write raises ``StoreError`` and the LMTP layer answers
with a temporary failure, so the MTA keeps the message queued.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import sqlite3
import time
import uuid
from typing import Any


class StoreError(Exception):
    """A blob or metadata operation failed."""


class DirectoryBlobs:
    """Blobs as files (for tests without an object store)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def put(self, key: str, data: bytes, usermd: str) -> None:
        os.makedirs(self.path, exist_ok=True)
        tmp = os.path.join(self.path, key + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, os.path.join(self.path, key))

    def get(self, key: str) -> bytes:
        try:
            with open(os.path.join(self.path, key), "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise StoreError(f"blob {key}: {exc}") from exc


class SproxydBlobs:
    """Blobs through sproxyd: ``PUT/GET <url>/<40-hex key>``, user metadata in
    ``x-scal-usermd`` (base64 of a small JSON document, as Zimbra's external store does)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        import requests  # imported here: the directory backend must work without it

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.errors = (requests.RequestException,)

    def put(self, key: str, data: bytes, usermd: str) -> None:
        import base64

        headers = {"x-scal-usermd": base64.b64encode(usermd.encode()).decode(),
                   "Content-Type": "application/octet-stream"}
        try:
            reply = self.session.put(f"{self.url}/{key}", data=data, headers=headers,
                                     timeout=self.timeout)
        except self.errors as exc:
            raise StoreError(f"sproxyd PUT {key}: {exc}") from exc
        if reply.status_code not in (200, 201, 204):
            raise StoreError(f"sproxyd PUT {key}: HTTP {reply.status_code}")

    def get(self, key: str) -> bytes:
        try:
            reply = self.session.get(f"{self.url}/{key}", timeout=self.timeout)
        except self.errors as exc:
            raise StoreError(f"sproxyd GET {key}: {exc}") from exc
        if reply.status_code != 200:
            raise StoreError(f"sproxyd GET {key}: HTTP {reply.status_code}")
        return reply.content


def blobs_from_config(store: dict[str, Any]) -> DirectoryBlobs | SproxydBlobs:
    if store.get("type") == "sproxyd":
        return SproxydBlobs(store["url"], float(store.get("timeout", 10)))
    if store.get("type") == "directory":
        return DirectoryBlobs(store["path"])
    raise StoreError(f"unknown store type {store.get('type')!r}")


SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    sender TEXT NOT NULL,
    subject TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS message_account ON message (account);
"""


class MailStore:
    def __init__(self, db_dir: str, index_dir: str, blobs: DirectoryBlobs | SproxydBlobs):
        self.db_path = os.path.join(db_dir, "data", "mailbox.sqlite")
        self.index_dir = index_dir
        self.blobs = blobs

    def _connect(self) -> sqlite3.Connection:
        try:
            os.makedirs(os.path.dirname(self.db_path), exist_ok=True)
            conn = sqlite3.connect(self.db_path, timeout=30)
            conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"metadata database {self.db_path}: {exc}") from exc
        return conn

    @staticmethod
    def new_key() -> str:
        # 160-bit keys written as 40 upper-case hex digits, as sproxyd expects.
        return hashlib.sha1(uuid.uuid4().bytes).hexdigest().upper()

    def deliver(self, account: str, sender: str, data: bytes) -> int:
        account = account.lower()
        parsed = email.message_from_bytes(data, policy=email.policy.compat32)
        subject = str(parsed.get("Subject", ""))
        message_id = str(parsed.get("Message-ID", ""))
        key = self.new_key()
        usermd = json.dumps({"account": account, "message_id": message_id})
        self.blobs.put(key, data, usermd)
        conn = self._connect()
        try:
            with conn:
                cur = conn.execute(
                    "INSERT INTO message (account, blob_key, size, sha256, sender, subject,"
                    " message_id, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (account, key, len(data), hashlib.sha256(data).hexdigest(), sender,
                     subject, message_id, time.time()),
                )
                msg_id = int(cur.lastrowid or 0)
            os.makedirs(self.index_dir, exist_ok=True)
            with open(os.path.join(self.index_dir, account + ".idx"), "a",
                      encoding="utf-8") as handle:
                handle.write(json.dumps({"id": msg_id, "subject": subject}) + "\n")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"metadata for {account}: {exc}") from exc
        finally:
            conn.close()
        return msg_id

    def search(self, account: str, text: str = "") -> list[dict[str, Any]]:
        conn = self._connect()
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute(
                "SELECT * FROM message WHERE account = ? AND subject LIKE ? ORDER BY id",
                (account.lower(), f"%{text}%"),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        finally:
            conn.close()
        return [dict(row) for row in rows]

    def get(self, account: str, msg_id: int) -> tuple[dict[str, Any], bytes]:
        conn = self._connect()
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute("SELECT * FROM message WHERE account = ? AND id = ?",
                               (account.lower(), msg_id)).fetchone()
        finally:
            conn.close()
        if row is None:
            raise StoreError(f"no such message: {msg_id}")
        data = self.blobs.get(row["blob_key"])
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise StoreError(f"blob {row['blob_key']} does not match its checksum")
        return dict(row), data


def from_config(cfg: dict[str, Any]) -> MailStore:
    volumes = cfg.get("volumes") or {}
    home = cfg["zimbra_home"]
    return MailStore(volumes.get("db", os.path.join(home, "db")),
                     volumes.get("index", os.path.join(home, "index")),
                     blobs_from_config(cfg.get("store") or {"type": "directory",
                                                           "path": os.path.join(home, "store")}))
