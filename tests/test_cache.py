"""The shared cache keeps the promises launch state relies on, across worker processes."""

import multiprocessing
import time

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
