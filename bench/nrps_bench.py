"""Roster sync benchmark: a 5,000-member course read in pages of 100 from a local test platform.

    .venv/bin/python bench/nrps_bench.py [--members 5000] [--page 100]
        [--database-url postgresql://…]

On a fresh database (a temporary SQLite file, or a new database on the given PostgreSQL server,
dropped afterwards) with one registered platform and one course, it runs two syncs over HTTP from
the test platform of tests/nrps_platform.py (real tokens, real paging): the first creates every
user and membership, the second finds nothing changed. For each it prints the wall time, the SQL
statements sent (all, and the writes among them, apart from the sync's own record and the
course's status), and the peak memory Python allocated during the same sync of a second course
of as many other people (tracemalloc; the timed course runs without it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RECORD_TABLES = {"roster_sync", "rbac_group", "lti_platform"}  # the sync's own bookkeeping


class Statements:
    """Counts the statements an engine sends, and the writes by table."""

    def __init__(self, engine):
        self.engine, self.total, self.writes = engine, 0, {}

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self.count)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self.count)

    def count(self, conn, cursor, statement, parameters, context, executemany):
        self.total += 1
        words = statement.split()
        verb = words[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            table = words[1 if verb == "UPDATE" else 2].strip('"')
            self.writes[table] = self.writes.get(table, 0) + 1

    @property
    def roster_writes(self) -> int:
        return sum(n for table, n in self.writes.items() if table not in RECORD_TABLES)


def run_sync(db, group_id: int, trace: bool) -> dict:
    from lti_tool.models import RBACGroup
    from lti_tool.services import nrps

    db.session.expire_all()
    group = db.session.get(RBACGroup, group_id)
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    with Statements(db.engine) as statements:
        record = nrps.sync(group, trigger="command")
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    assert record.error == "", record.error
    return {"seconds": seconds, "statements": statements.total,
            "writes": statements.roster_writes, "peak": peak / 2**20,
            "summary": nrps.summary_line(record.members, record.added, record.updated,
                                         record.removed, record.skipped),
            "tables": dict(sorted(statements.writes.items()))}


def measure(count: int, page: int, server: str | None) -> None:
    from flask_migrate import upgrade

    from lti_tool import create_app
    from lti_tool.extensions import db
    from lti_tool.models import RBACGroup
    from lti_tool.services import keys, nrps_reader
    from tests.databases import fresh_database
    from tests.lms import TestPlatform
    from tests.nrps_platform import NrpsPlatform, member, members

    with fresh_database(server, "nrps_bench") as url, tempfile.TemporaryDirectory() as inst:
        os.environ["INSTANCE_PATH"] = inst
        app = create_app({"SQLALCHEMY_DATABASE_URI": url})
        with app.app_context():
            upgrade()
            lms = TestPlatform()
            service = NrpsPlatform(lms)
            try:
                keys.ensure_current_key()
                db.session.commit()
                reader = app.test_client()
                service.read_tool_jwks = lambda: reader.get("/lti/jwks").get_json()
                service.read_tool_keys()
                platform = lms.register(db, auth_token_url=service.token_url, enable_nrps=True,
                                        remove_from_groups_on_unenroll=True)
                groups = {}
                # Two courses of different people: one timed, one under tracemalloc (which
                # slows allocation-heavy code, psycopg's most of all, several times over).
                for context, start in (("24", 1), ("25", count + 1)):
                    service.set_roster([member(str(start), "Instructor"),
                                        *members(count - 1, start=start + 1)], context)
                    groups[context] = RBACGroup(
                        name=f"Course {context}", platform_id=platform.id,
                        lti_context_id=context, memberships_url=service.memberships_url(context))
                    db.session.add(groups[context])
                db.session.commit()
                nrps_reader.PAGE_SIZE = page  # the page size asked for (the setting)
                for label in ("first sync", "unchanged"):
                    if label == "unchanged" and db.engine.dialect.name == "postgresql":
                        # Fresh statistics, as autovacuum gathers within a minute of the bulk
                        # insert: the planner otherwise takes the tables for empty.
                        with db.engine.begin() as conn:
                            conn.execute(sa.text("ANALYZE"))
                    timed = run_sync(db, groups["24"].id, trace=False)
                    traced = run_sync(db, groups["25"].id, trace=True)
                    print(f"{label:>11}: {timed['seconds']:6.1f} s, "
                          f"{timed['statements']:6,} statements, "
                          f"{timed['writes']:6,} roster writes, "
                          f"peak {traced['peak']:5.1f} MiB  ({timed['summary']})")
                    print(f"{'':>13}writes by table: {timed['tables']}")
                pages = len(service.memberships_requests()) // 4
                print(f"{'':>13}{pages} pages of {page} per sync")
            finally:
                service.close()
                lms.server.close()
                db.session.remove()
                db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--database-url", help="a PostgreSQL server (default: SQLite)")
    args = parser.parse_args()
    print(f"NRPS benchmark: {args.members:,} members in pages of {args.page}, "
          f"{'PostgreSQL' if args.database_url else 'SQLite'}, {os.cpu_count()} cores")
    measure(args.members, args.page, args.database_url)


if __name__ == "__main__":
    main()
