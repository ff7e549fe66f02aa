"""Cache backends safe for launch state shared by several worker processes.

OIDC state, nonces and locks rely on two promises the stock backends do not keep:
`add` succeeds for exactly one caller (Flask-Caching's file cache checks, then writes; its Redis
cache sets the expiry in a second command), and `delete` tells whether the key was there (the
file cache always says yes). The file cache also evicts live entries past its threshold, which
would lose logins at a lecture start; here only expired entries are pruned.
"""

from __future__ import annotations

import os
import struct
import tempfile
from time import time
from typing import Any

from flask_caching.backends.filesystemcache import FileSystemCache
from flask_caching.backends.rediscache import RedisCache


class SharedFileSystemCache(FileSystemCache):
    """File cache for the workers of one host: atomic add, truthful delete, no live eviction."""

    PRUNE_ABOVE = 10_000  # files; past this, expired entries are removed (never live ones)

    @classmethod
    def factory(cls, app, config, args, kwargs):
        args.insert(0, config["CACHE_DIR"])
        kwargs.update(threshold=cls.PRUNE_ABOVE, hash_method=config["CACHE_FILE_HASH_METHOD"])
        return cls(*args, **kwargs)

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
        self._update_count(delta=1)
        return True

    def delete(self, key: str, mgmt_element: bool = False) -> bool:
        try:
            os.remove(self._get_filename(key))
        except FileNotFoundError:
            return False
        if not mgmt_element:
            self._update_count(delta=-1)
        return True

    def _prune(self) -> None:
        if self._over_threshold():
            self._remove_expired(time())

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
