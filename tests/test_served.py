"""The tool served by gunicorn with two workers, as `make run` and production serve it."""

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from .server import serve


def get_json(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def served(app, migrated, tmp_path):
    """The migrated test database served by two workers; `app` empties it afterwards."""
    with serve(migrated, tmp_path / "instance") as base:
        yield base


def test_healthz_and_jwks_are_served(served):
    assert get_json(f"{served}/healthz") == (
        200, {"status": "ok", "database": "ok", "cache": "ok"}
    )
    status, jwks = get_json(f"{served}/lti/jwks")
    assert status == 200
    [key] = jwks["keys"]
    assert key["kty"] == "RSA" and key["kid"]


def test_workers_racing_to_make_the_first_key_agree_on_one(served):
    """Many first requests at once, spread over both workers, must publish one and the same key."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: get_json(f"{served}/lti/jwks"), range(32)))
    kid_sets = {tuple(k["kid"] for k in jwks["keys"]) for status, jwks in results}
    assert {status for status, _ in results} == {200}
    assert len(kid_sets) == 1 and len(next(iter(kid_sets))) == 1
