"""Cache backends safe for launch state shared by several worker processes.

OIDC state, nonces and locks rely on two promises the stock backends do not keep:
`add` succeeds for exactly one caller (Flask-Caching's file cache checks, then writes; its Redis
cache sets the expiry in a second command), and `delete` tells whether the key was there (the
file cache always says yes). The file cache also evicts live entries past its threshold, which
would lose logins at a lecture start; here only expired entries are pruned. Both add `count`, an
atomic counter with an expiry (sign-in throttling: parallel guesses must each be counted).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import struct
import tempfile
from time import time
from typing import Any

from flask_caching.backends.filesystemcache import FileSystemCache
from flask_caching.backends.rediscache import RedisCache


class SharedFileSystemCache(FileSystemCache):
    """File cache for the workers of one host: atomic add, truthful delete, no live eviction,
    and a folder that stays small as the day goes on.

    Entries live in SHARDS subfolders named by their hash's first two hex digits, and each
    file's modification time is set to its expiry: a sweep lists one subfolder and reads no
    file that has not expired. Every SWEEP_EVERY writes a process sweeps the next subfolder in
    turn (at a launch's two writes, a whole pass takes minutes under load), at once the
    subfolder it writes to when that holds more than SHARD_CAP files, and the upkeep job sweeps
    them all. Only expired entries are ever removed: a live login state is never evicted.
    cachelib's item count file (rewritten on every write) is not kept.
    """

    SHARDS = 256
    SWEEP_EVERY = 32  # writes of one process between sweeps of one subfolder
    SHARD_CAP = 2000  # files in a subfolder above which a write sweeps it first
    NEVER = 2**32 - 1  # the modification time of entries without expiry (year 2106)

    @classmethod
    def factory(cls, app, config, args, kwargs):
        args.insert(0, config["CACHE_DIR"])
        kwargs.update(threshold=0, hash_method=config["CACHE_FILE_HASH_METHOD"])
        return cls(*args, **kwargs)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._writes = 0
        self._next_shard = random.randrange(self.SHARDS)  # workers start on different ones
        self._shard_files: dict[str, int] = {}  # files seen at the last sweep, plus writes

    def _update_count(self, delta: int | None = None, value: int | None = None) -> None:
        pass

    def _get_filename(self, key: str) -> str:
        if not isinstance(key, str):
            raise TypeError(f"Key must be a string, received type {type(key)}")
        digest = self._hash_method(key.encode("utf-8")).hexdigest()
        return os.path.join(self._path, digest[:2], digest)

    def _write_tmp(self, filename: str, value: Any, expires: int) -> str:
        """The entry written to a temporary file beside `filename`, mtime set to its expiry."""
        folder = os.path.dirname(filename)
        try:
            fd, tmp = tempfile.mkstemp(suffix=self._fs_transaction_suffix, dir=folder)
        except FileNotFoundError:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=self._fs_transaction_suffix, dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(struct.pack("I", expires))
                self.serializer.dump(value, f)
            os.chmod(tmp, self._mode)
            mtime = expires or self.NEVER
            os.utime(tmp, (mtime, mtime))
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def _wrote(self, filename: str) -> None:
        """Count a write; sweep a subfolder when one is due, or this one when it is full."""
        shard = os.path.basename(os.path.dirname(filename))
        files = self._shard_files.get(shard, 0) + 1
        self._shard_files[shard] = files
        self._writes += 1
        if files > self.SHARD_CAP:
            self.sweep_shard(shard)
        elif self._writes % self.SWEEP_EVERY == 0:
            self._next_shard = (self._next_shard + 1) % self.SHARDS
            self.sweep_shard(f"{self._next_shard:02x}")

    def set(self, key: str, value: Any, timeout: int | None = None,
            mgmt_element: bool = False) -> bool:
        filename = self._get_filename(key)
        try:
            tmp = self._write_tmp(filename, value, self._normalize_timeout(timeout))
            os.replace(tmp, filename)
        except OSError:
            logging.warning("Cache entry %s could not be written", filename, exc_info=True)
            return False
        self._wrote(filename)
        return True

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        filename = self._get_filename(key)
        self._drop_if_expired(filename)
        tmp = self._write_tmp(filename, value, self._normalize_timeout(timeout))
        try:
            os.link(tmp, filename)  # fails if the key exists: one caller wins
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        self._wrote(filename)
        return True

    def count(self, key: str, timeout: int, delta: int = 1) -> int:
        """Add `delta` to the counter `key` (made with this timeout if absent or expired) and
        return its new value; one file lock serialises counters across the host's workers."""
        filename = self._get_filename(key)
        lock_name = os.path.join(self._path, "counters.lock" + self._fs_transaction_suffix)
        with open(lock_name, "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(filename, "rb") as f:
                    expires = struct.unpack("I", f.read(4))[0]
                    value = self.serializer.load(f)
                if expires != 0 and expires < time():
                    raise FileNotFoundError(filename)
            except (FileNotFoundError, struct.error, EOFError):
                expires, value = self._normalize_timeout(timeout), 0
            value += delta
            os.replace(self._write_tmp(filename, value, expires), filename)
        self._wrote(filename)
        return value

    def delete(self, key: str, mgmt_element: bool = False) -> bool:
        try:
            os.remove(self._get_filename(key))
        except FileNotFoundError:
            return False
        return True

    def clear(self) -> bool:
        for folder, _, names in os.walk(self._path):
            for name in names:
                if folder != self._path or not name.startswith("counters.lock"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(folder, name))
        self._shard_files.clear()
        return True

    def _prune(self) -> None:
        pass  # writes sweep as they go (`_wrote`)

    def sweep_shard(self, shard: str, now: float | None = None) -> int:
        """Remove the expired entries of one subfolder, and temporary files left by a process
        that died mid-write; return how many files went."""
        now = time() if now is None else now
        removed = kept = 0
        try:
            entries = list(os.scandir(os.path.join(self._path, shard)))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            try:
                if entry.name.endswith(self._fs_transaction_suffix):
                    # left by a process that died mid-write (a live one takes milliseconds)
                    stale = entry.stat().st_mtime < now - 3600
                else:
                    stale = entry.stat().st_mtime < now and self._expired(entry.path, now)
                if stale:
                    os.remove(entry.path)
                    removed += 1
                else:
                    kept += 1
            except FileNotFoundError:
                pass
        self._shard_files[shard] = kept
        return removed

    def sweep(self, now: float | None = None) -> int:
        """Sweep every subfolder and the folder itself (entries of the unsharded layout): the
        upkeep job's pass. Returns how many files went."""
        now = time() if now is None else now
        removed = sum(self.sweep_shard(f"{n:02x}", now) for n in range(self.SHARDS))
        for entry in os.scandir(self._path):
            if entry.is_file() and not entry.name.startswith("counters.lock") and (
                self._expired(entry.path, now)
                or entry.name.endswith(self._fs_transaction_suffix)
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(entry.path)
                    removed += 1
        return removed

    def entries(self) -> int:
        """How many files the cache folder holds now (what the sweeps keep bounded)."""
        return sum(len([n for n in names if not n.startswith("counters.lock")])
                   for _, _, names in os.walk(self._path))

    @staticmethod
    def _expired(filename: str, now: float) -> bool:
        """Whether the entry's own header says it has expired (the mtime is only a hint)."""
        try:
            with open(filename, "rb") as f:
                expires = struct.unpack("I", f.read(4))[0]
        except (FileNotFoundError, struct.error):
            return False
        return expires != 0 and expires < now

    def _drop_if_expired(self, filename: str) -> None:
        # Two callers racing on an expired entry may both win once; that only matters for
        # rate-limit markers, where it means one extra refresh.
        if self._expired(filename, time()):
            with contextlib.suppress(FileNotFoundError):
                os.remove(filename)


class AtomicRedisCache(RedisCache):
    """Redis cache whose `add` sets value and expiry in one command (SET NX EX)."""

    def count(self, key: str, timeout: int, delta: int = 1) -> int:
        """Add `delta` to the counter `key` (made with this timeout if absent) and return its
        new value: SET NX EX and INCRBY in one MULTI/EXEC transaction."""
        name = f"{self._get_prefix()}{key}"
        pipe = self._write_client.pipeline(transaction=True)
        pipe.set(name, self.serializer.dumps(0), nx=True, ex=self._normalize_timeout(timeout))
        pipe.incrby(name, delta)
        return int(pipe.execute()[1])

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        expires = self._normalize_timeout(timeout)
        return bool(
            self._write_client.set(
                name=f"{self._get_prefix()}{key}",
                value=self.serializer.dumps(value),
                nx=True,
                ex=expires if expires > 0 else None,
            )
        )
