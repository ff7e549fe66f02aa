"""Cache backends safe for launch state shared by several worker processes.

OIDC state, nonces and locks rely on two promises the stock backends do not keep:
`add` succeeds for exactly one caller (Flask-Caching's file cache checks, then writes; its Redis
cache sets the expiry in a second command), and `delete` tells whether the key was there (the
file cache always says yes). The file cache also evicts live entries past its threshold, which
would lose logins at a lecture start; here only expired entries are pruned. Both add `count`, an
atomic counter with an expiry (sign-in throttling: parallel guesses must each be counted).
"""

from __future__ import annotations

import fcntl
import os
import random
import struct
import tempfile
from time import time
from typing import Any

from flask_caching.backends.filesystemcache import FileSystemCache
from flask_caching.backends.rediscache import RedisCache


class SharedFileSystemCache(FileSystemCache):
    """File cache for the workers of one host: atomic add, truthful delete, no live eviction.

    cachelib keeps an item count in a file rewritten on every write, which costs more than the
    write itself; here expired files are instead swept on a random one in PRUNE_EVERY writes.
    """

    PRUNE_EVERY = 500

    @classmethod
    def factory(cls, app, config, args, kwargs):
        args.insert(0, config["CACHE_DIR"])
        kwargs.update(threshold=0, hash_method=config["CACHE_FILE_HASH_METHOD"])
        return cls(*args, **kwargs)

    def _update_count(self, delta: int | None = None, value: int | None = None) -> None:
        pass

    def _prune(self) -> None:
        if random.randrange(self.PRUNE_EVERY) == 0:
            self._remove_expired(time())

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        filename = self._get_filename(key)
        self._drop_if_expired(filename)
        fd, tmp = tempfile.mkstemp(suffix=self._fs_transaction_suffix, dir=self._path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(struct.pack("I", self._normalize_timeout(timeout)))
                self.serializer.dump(value, f)
            os.chmod(tmp, self._mode)
            os.link(tmp, filename)  # fails if the key exists: one caller wins
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
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
            fd, tmp = tempfile.mkstemp(suffix=self._fs_transaction_suffix, dir=self._path)
            with os.fdopen(fd, "wb") as f:
                f.write(struct.pack("I", expires))
                self.serializer.dump(value, f)
            os.chmod(tmp, self._mode)
            os.replace(tmp, filename)
        return value

    def delete(self, key: str, mgmt_element: bool = False) -> bool:
        try:
            os.remove(self._get_filename(key))
        except FileNotFoundError:
            return False
        return True

    def _drop_if_expired(self, filename: str) -> None:
        # Two callers racing on an expired entry may both win once; that only matters for
        # rate-limit markers, where it means one extra refresh.
        try:
            with open(filename, "rb") as f:
                expires = struct.unpack("I", f.read(4))[0]
            if expires != 0 and expires < time():
                os.remove(filename)
        except (FileNotFoundError, struct.error):
            pass


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
