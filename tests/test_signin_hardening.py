"""Sign-in throttling that holds under concurrency, and no timing oracle for usernames."""

import threading

import pytest

from lti_tool.extensions import cache
from lti_tool.models import GlobalRole
from lti_tool.services import users

from .conftest import csrf

# More guesses than the account allows, fewer than the address allows: every refusal is then
# the account's, whichever counter each thread reaches first.
PARALLEL = 16


def sign_in(client, username, password, page=None):
    page = page or client.get("/admin/login")
    return client.post("/admin/login", data={"username": username, "password": password,
                                             "csrf_token": csrf(page)})


def test_parallel_wrong_passwords_check_no_more_than_the_limit(app, make_user):
    assert users.MAX_FAILURES_PER_ACCOUNT < PARALLEL <= users.MAX_FAILURES_PER_IP
    make_user("root", password="long-password-1", global_role=GlobalRole.ADMIN)
    clients = [app.test_client() for _ in range(PARALLEL)]
    pages = [c.get("/admin/login") for c in clients]
    start = threading.Barrier(PARALLEL)
    statuses: list[tuple[int, bool]] = []

    def guess(client, page):
        start.wait()
        response = sign_in(client, "root", "wrong-guess", page)
        statuses.append((response.status_code, b"Wrong username or password" in response.data))

    threads = [threading.Thread(target=guess, args=pair) for pair in zip(clients, pages,
                                                                         strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    checked = sum(1 for _, wrong in statuses if wrong)
    assert len(statuses) == PARALLEL
    assert checked == users.MAX_FAILURES_PER_ACCOUNT, "every guess counted, no more checked"
    assert sum(1 for status, _ in statuses if status == 429) == PARALLEL - checked
    locked = sign_in(app.test_client(), "root", "long-password-1")
    assert locked.status_code == 429
    assert f"wait {users.SIGNIN_WINDOW // 60} minutes".encode() in locked.data


def test_the_counter_is_atomic_across_threads(app):
    counted: list[int] = []

    def count():
        for _ in range(10):
            counted.append(cache.cache.count("test-counter", 60))

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counted) == list(range(1, 81)), "each increment seen exactly once"
    assert cache.get("test-counter") == 80
    assert cache.cache.count("test-counter", 60, -1) == 79


def test_successes_do_not_use_up_the_address(client, make_user):
    make_user("root", password="long-password-1", global_role=GlobalRole.ADMIN)
    for _ in range(users.MAX_FAILURES_PER_IP + 5):
        assert sign_in(client, "root", "long-password-1").status_code == 303
    assert sign_in(client, "root", "long-password-1").status_code == 303


@pytest.fixture
def hash_checks(monkeypatch) -> list[str]:
    """The password hashes checked during the test (werkzeug's function, wrapped to count)."""
    checked: list[str] = []
    real = users.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        checked.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(users, "check_password_hash", counting)
    return checked


@pytest.mark.parametrize("who", ["unknown", "no-password", "inactive", "known"])
def test_every_username_costs_one_hash_check(client, make_user, hash_checks, who):
    make_user("known", password="long-password-1", global_role=GlobalRole.ADMIN)
    make_user("inactive", password="long-password-1", global_role=GlobalRole.ADMIN,
              active=False)
    make_user("no-password", global_role=GlobalRole.ADMIN)  # arrives by LTI launch only
    response = sign_in(client, who, "wrong-password-9")
    assert response.status_code == 200 and b"Wrong username or password" in response.data
    assert len(hash_checks) == 1
    assert hash_checks[0].split("$")[0] == make_user("probe", password="x" * 8).password_hash \
        .split("$")[0], "the dummy hash uses the accounts' method and cost"


def test_a_deactivated_account_with_its_password_is_refused(client, make_user, hash_checks):
    make_user("inactive", password="long-password-1", global_role=GlobalRole.ADMIN,
              active=False)
    assert b"Wrong username or password" in sign_in(client, "inactive", "long-password-1").data
    assert len(hash_checks) == 1
