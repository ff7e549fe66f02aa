"""Ids that leave the tool (LMS links, preview URLs, bookmarks) never reach a later row."""

import sqlalchemy as sa

from lti_tool.models import Category, LTIPlatform, LTIResourceLink, Media, User

from .lms import INSTRUCTOR, LEARNER
from .test_media_manage import REFERER, course, csrf, upload


def test_an_old_lms_link_to_deleted_media_never_opens_the_next_upload(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    upload(browser, db, title="Exam answers")
    old = db.session.scalar(sa.select(Media)).id
    confirm = browser.get(f"/media/{old}/delete")
    browser.post(f"/media/{old}/delete", headers=REFERER, data={"csrf_token": csrf(confirm)})

    upload(browser, db, title="Someone else's lecture")
    new = db.session.scalar(sa.select(Media)).id
    assert new > old

    relaunch = lms.launch(browser, roles=[LEARNER], custom={"media_id": str(old)})
    assert relaunch.headers["Content-Location"].endswith(f"/media/category/{course(db).id}")
    assert b"has been deleted" in relaunch.data
    assert browser.get(f"/media/{old}").status_code == 404


def test_users_platforms_courses_and_links_get_fresh_ids(db, make_user, make_platform):
    def newest_is_replaced(model, make) -> None:
        row = make()
        first = row.id
        db.session.delete(row)
        db.session.commit()
        assert make().id > first, model.__name__

    newest_is_replaced(User, make_user)
    newest_is_replaced(LTIPlatform, make_platform)
    platform = make_platform()

    def add(model, **values):
        row = model(**values)
        db.session.add(row)
        db.session.commit()
        return row

    newest_is_replaced(Category, lambda: add(Category, title="Physics"))
    newest_is_replaced(
        LTIResourceLink,
        lambda: add(LTIResourceLink, platform=platform, context_id="c", resource_link_id="r"),
    )
