"""Audit viewer benchmark: the launch log's pages and CSV export at 1,000 and 1,000,000 rows.

    .venv/bin/python bench/audit_bench.py [--sizes 1000 1000000] [--repeat 20]
        [--database-url postgresql://…]

For each size it builds a fresh database (a temporary SQLite file, or a new database on the given
PostgreSQL server, dropped afterwards), fills the launch log in bulk across 5 platforms and 2,000
users over 30 days (one in ten launches failed), signs in an admin and prints the median time,
through the Flask test client, of: the first page, a deep page (the page after the entry half way
down the log, by its cursor: what "page 10,000" is with 50 rows a page), a page filtered on one
user, and the CSV export rate over its first 50,000 rows. Goal: the 1,000,000-row pages within 3x
of the 1,000-row ones.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import median_ms, print_comparison  # noqa: E402

CATEGORIES = ("expired", "unknown_deployment", "state_missing", "bad_signature", "nonce_replay")


def fill(db, size: int) -> None:
    from lti_tool.models import LTILaunchLog, LTIPlatform, User

    platforms = [LTIPlatform(name=f"Platform {n}", platform_id=f"https://lms{n}.example.edu",
                             client_id="c", auth_login_url="https://x/a",
                             auth_token_url="https://x/t", key_set_url="https://x/k")
                 for n in range(5)]
    users = [User(username=f"student{n}") for n in range(2000)]
    db.session.add_all(platforms + users)
    db.session.commit()
    rng = random.Random(size)
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / size
    rows = []
    for n in range(size):
        failed = rng.random() < 0.1
        rows.append({
            "platform_id": rng.choice(platforms).id,
            "user_id": None if failed and rng.random() < 0.5 else rng.choice(users).id,
            "launch_type": "resource_link", "success": not failed,
            "error_category": rng.choice(CATEGORIES) if failed else None,
            "error_message": "The id_token expired 75 s ago." if failed else "",
            "claims": {"sub": f"s{n % 2000}", "roles": ["Learner"]},
            "ip_address": f"203.0.113.{n % 250}", "created_at": start + step * n,
        })
        if len(rows) == 20_000:
            db.session.execute(sa.insert(LTILaunchLog), rows)
            db.session.commit()
            rows = []
    if rows:
        db.session.execute(sa.insert(LTILaunchLog), rows)
        db.session.commit()


def export_rate(client, limit: int = 50_000) -> float:
    """Rows per second of the streamed CSV export, over its first `limit` rows."""
    started = time.perf_counter()
    rows = 0
    with client.get("/audit/export.csv", buffered=False) as response:
        for chunk in response.response:
            rows += chunk.count("\n") if isinstance(chunk, str) else chunk.count(b"\n")
            if rows >= limit:
                break
    return rows / (time.perf_counter() - started)


def measure(size: int, server: str | None, repeat: int) -> dict[str, float]:
    from flask_migrate import upgrade

    from lti_tool import create_app
    from lti_tool.extensions import db
    from lti_tool.models import LTILaunchLog, User
    from tests.databases import fresh_database

    with fresh_database(server, "audit_bench") as url, tempfile.TemporaryDirectory() as inst:
        os.environ["INSTANCE_PATH"] = inst
        app = create_app({"SQLALCHEMY_DATABASE_URI": url})
        with app.app_context():
            upgrade()
            started = time.perf_counter()
            fill(db, size)
            print(f"  filled {size:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
            admin = User(username="bench-admin", global_role="admin")
            admin.set_password("bench-password")
            db.session.add(admin)
            db.session.commit()
            client = app.test_client()
            page = client.get("/admin/login")
            token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data)
            client.post("/admin/login", data={"username": "bench-admin",
                                              "password": "bench-password",
                                              "csrf_token": token.group(1).decode()})
            half = db.session.scalar(
                sa.select(LTILaunchLog.id).order_by(LTILaunchLog.created_at.desc(),
                                                    LTILaunchLog.id.desc())
                .offset(size // 2).limit(1))
            results = {
                "first page": median_ms(client, "/audit/", repeat),
                "deep page": median_ms(client, f"/audit/?before={half}", repeat),
                "one user": median_ms(client, "/audit/?user=student42", repeat),
                "CSV rows/s": export_rate(client),
            }
            db.session.remove()
            db.engine.dispose()
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database-url", help="a PostgreSQL server (default: SQLite)")
    args = parser.parse_args()
    print(f"audit benchmark: {'PostgreSQL' if args.database_url else 'SQLite'}, median of "
          f"{args.repeat} requests through the Flask test client, {os.cpu_count()} cores")
    results = {size: measure(size, args.database_url, args.repeat) for size in args.sizes}
    print_comparison("rows", results)


if __name__ == "__main__":
    main()
