"""The shared cache keeps the promises launch state relies on, across worker processes."""

import multiprocessing
import time
from pathlib import Path

import pytest

from lti_tool.extensions import cache


def _add_in_child(instance_path: str, prefix: str, queue) -> None:
    import os

    os.environ["INSTANCE_PATH"] = instance_path
    os.environ["CACHE_KEY_PREFIX"] = prefix
    from lti_tool import create_app
    from lti_tool.extensions import cache

    with create_app().app_context():
        queue.put(cache.add("the-lock", os.getpid(), timeout=30))


def test_add_succeeds_for_exactly_one_of_many_processes(app, instance_path, monkeypatch):
    import os

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    prefix = os.environ["CACHE_KEY_PREFIX"]
    children = [context.Process(target=_add_in_child, args=(instance_path, prefix, queue))
                for _ in range(6)]
    for child in children:
        child.start()
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)
    assert sorted(results) == [False] * 5 + [True]


def test_delete_says_whether_the_key_was_there(app):
    cache.set("login", {"nonce": "n"})
    assert cache.delete("login") is True
    assert cache.delete("login") is False


def test_add_takes_an_expired_key(app):
    assert cache.add("marker", 1, timeout=1)
    assert not cache.add("marker", 2, timeout=1)
    time.sleep(2.1)
    assert cache.add("marker", 3, timeout=30)
    assert cache.get("marker") == 3


@pytest.mark.parametrize("n", [600])
def test_live_entries_are_never_evicted(app, n):
    for i in range(n):
        cache.set(f"state-{i}", i, timeout=300)
    assert all(cache.get(f"state-{i}") == i for i in range(n))


def _file_cache():
    from lti_tool.cache_backends import SharedFileSystemCache

    if not isinstance(cache.cache, SharedFileSystemCache):
        pytest.skip("the file cache's folder (Redis expires its own keys)")
    return cache.cache


def test_the_upkeep_job_removes_expired_entries_and_keeps_live_ones(app):
    from lti_tool.models import Job, JobState
    from lti_tool.services import jobs

    files = _file_cache()
    for i in range(300):
        cache.set(f"used-nonce-{i}", 1, timeout=1)
    for i in range(20):
        cache.set(f"login-{i}", {"nonce": i}, timeout=600)
    time.sleep(2.1)
    job = jobs.submit("cache.sweep", subject="cache.sweep")
    assert jobs.run_waiting() == 1
    done = app.extensions["sqlalchemy"].session.get(Job, job.id, populate_existing=True)
    assert done.state is JobState.DONE
    assert files.entries() == 20
    assert all(cache.get(f"login-{i}") == {"nonce": i} for i in range(20))


def test_a_busy_day_leaves_a_bounded_folder_without_the_upkeep_job(app):
    """Writes sweep as they go: after a morning of launches has expired, the afternoon's
    writes alone clear it, and the folder holds the live entries only."""
    files = _file_cache()
    for i in range(3000):  # the morning: used nonces and logins, now expired
        cache.set(f"morning-{i}", 1, timeout=1)
    time.sleep(2.1)
    # the afternoon: as many writes as one pass over every subfolder takes, on 50 live keys
    for i in range(files.SHARDS * files.SWEEP_EVERY):
        cache.set(f"afternoon-{i % 50}", i, timeout=600)
    assert files.entries() == 50
    assert cache.get("afternoon-7") is not None


def test_a_full_subfolder_never_loses_a_live_entry(app):
    files = _file_cache()
    keys, n = [], 0
    while len(keys) < files.SHARD_CAP + 100:  # keys that all land in one subfolder
        key = f"state-{n}"
        if files._get_filename(key).split("/")[-2] == "00":
            keys.append(key)
        n += 1
    for i, key in enumerate(keys):
        cache.set(key, i, timeout=600)
    assert all(cache.get(key) == i for i, key in enumerate(keys))


def test_the_cache_folder_is_split_into_subfolders(app):
    files = _file_cache()
    for i in range(100):
        cache.set(f"login-{i}", i, timeout=600)
    folder = Path(app.config["CACHE_DIR"])
    assert not [p for p in folder.iterdir() if p.is_file() and "counters" not in p.name]
    assert len([p for p in folder.iterdir() if p.is_dir()]) > 10
    assert files.entries() == 100
