"""Deep-linking picker benchmark: the picker's pages with 1,000 and 100,000 media items.

    .venv/bin/python bench/picker_bench.py [--sizes 1000 100000] [--repeat 30]
        [--database-url postgresql://…]

For each size it builds a fresh database (a temporary SQLite file, or a fresh database on the
given PostgreSQL server, dropped at the end), adds media in bulk (half public, a third in the
instructor's course, the rest private to other owners), opens the picker through a real
deep-linking launch of the test LMS (tests/lms.py) and prints the median time, through the
Flask test client, of: the first page, a search, and a deep page (the page after the item half
way down the list, reached by its cursor); also a broad search (a title word a sixteenth of the
items carry), for reference. Goal: the 100,000-item pages within 3x of the
1,000-item ones.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import median_ms, print_comparison  # noqa: E402

WORDS = ("cell", "energy", "history", "revolution", "algebra", "poetry", "climate", "market",
         "protein", "galaxy", "memory", "language", "ethics", "design", "ocean", "music")


def fill(db, size: int, course_id: int, owners: list[int]) -> None:
    """Add `size` media items in bulk, newest last."""
    from lti_tool.models import Media

    rng = random.Random(size)
    start = datetime.now(UTC) - timedelta(days=365)
    rows = []
    for n in range(size):
        kind = rng.random()
        rows.append({
            "title": f"Lecture {n} on {rng.choice(WORDS)} and {rng.choice(WORDS)}",
            # 12 words of a 5,000-word vocabulary: a word names about 0.24% of the items.
            "description": " ".join(f"term{rng.randrange(5000)}" for _ in range(12)),
            "file_path": f"bench/{n}.mp4", "original_filename": "", "mime_type": "video/mp4",
            "size": 1_000_000, "owner_id": rng.choice(owners),
            "category_id": course_id if 0.5 <= kind < 0.8 else None,
            "visibility": "public" if kind < 0.5 else "members" if kind < 0.8 else "private",
            "created_at": start + timedelta(seconds=n), "updated_at": start,
        })
        if len(rows) == 10_000:
            db.session.execute(sa.insert(Media), rows)
            rows = []
    if rows:
        db.session.execute(sa.insert(Media), rows)
    db.session.commit()


def measure(size: int, server: str | None, repeat: int) -> dict[str, float]:
    from flask_migrate import upgrade

    from lti_tool import create_app
    from lti_tool.extensions import db
    from lti_tool.models import Category, Media, User
    from tests.databases import fresh_database
    from tests.lms import INSTRUCTOR, TestPlatform

    with fresh_database(server, "picker_bench") as url, tempfile.TemporaryDirectory() as instance:
        os.environ["INSTANCE_PATH"] = instance
        app = create_app({"SQLALCHEMY_DATABASE_URI": url})
        with app.app_context():
            upgrade()
            lms = TestPlatform()
            lms.register(db)
            client = app.test_client()
            launch = lms.launch(client, message_type="LtiDeepLinkingRequest", roles=[INSTRUCTOR])
            picker = launch.headers["Location"]
            course = db.session.scalar(sa.select(Category.id))
            others = [User(username=f"owner{n}") for n in range(20)]
            db.session.add_all(others)
            db.session.commit()
            fill(db, size, course, [u.id for u in others])
            half = db.session.scalar(
                sa.select(Media.id).order_by(Media.created_at.desc(), Media.id.desc())
                .offset(size // 2).limit(1)
            )
            results = {
                "first page": median_ms(client, picker, repeat),
                "search": median_ms(client, f"{picker}?q=term1234", repeat),
                "broad search": median_ms(client, f"{picker}?q=revolution", repeat),
                "deep page": median_ms(client, f"{picker}?after={half}", repeat),
            }
            db.session.remove()
            db.engine.dispose()
            lms.server.close()
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database-url", help="a PostgreSQL server (default: SQLite)")
    args = parser.parse_args()
    print(f"picker benchmark: {'PostgreSQL' if args.database_url else 'SQLite'}, "
          f"median of {args.repeat} requests through the Flask test client, {os.cpu_count()} cores")
    results = {size: measure(size, args.database_url, args.repeat) for size in args.sizes}
    print_comparison("items", results)


if __name__ == "__main__":
    main()
