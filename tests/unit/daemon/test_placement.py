"""One study's place against the study table (real SQLite file): the study after it
in the worklist's order, and an undone read putting the study back on the paged list."""

from __future__ import annotations

from datetime import timedelta

from daemon import reads
from daemon.closing import CLOSED_ELSEWHERE, close_study
from daemon.db.session import SessionFactory, reading, writing
from daemon.placement import next_after, study_item
from daemon.worklist import worklist_page
from tests.unit.daemon.test_worklist_store import BANDS, MAX_WAIT, NOW, _mixed_site, _page

WINDOW = timedelta(minutes=10)
TOP = BANDS.cutoffs[0][0]


def _next(sessions: SessionFactory, uid: str) -> str | None:
    with reading(sessions) as s:
        return next_after(s, BANDS, uid, max_wait=MAX_WAIT, now=NOW)


def test_the_next_study_follows_the_paged_order_across_the_overdue_boundary(
    sessions: SessionFactory,
) -> None:
    _mixed_site(sessions, 40, seed=5)
    order, total = _page(sessions, limit=500)
    assert total == 40
    with reading(sessions) as s:
        overdue = [i.overdue for i in worklist_page(s, BANDS, max_wait=MAX_WAIT, now=NOW).items]
    assert any(overdue) and not all(overdue)
    for here, after in zip(order, [*order[1:], None], strict=True):
        assert _next(sessions, here) == after, here
    # Not on the list (read, or never received): the first open study.
    assert _next(sessions, "no.such.study") == order[0]
    with writing(sessions) as s:
        reads.mark_read(s, study_instance_uid=order[3], user="ann", top_band=TOP, confirmed=True)
    assert _next(sessions, order[3]) == order[0]
    assert _next(sessions, order[2]) == order[4]
    # With the site's close-after rule, studies open longer are skipped.
    with reading(sessions) as s:
        first_fresh = next(
            i
            for i in worklist_page(s, BANDS, max_wait=MAX_WAIT, now=NOW, limit=500).items
            if not i.overdue
        )
        assert (
            next_after(s, BANDS, "gone", max_wait=MAX_WAIT, close_after=MAX_WAIT, now=NOW)
            == first_fresh.entry.study_instance_uid
        )


def test_an_undone_read_puts_the_study_back_on_the_paged_worklist(
    sessions: SessionFactory,
) -> None:
    _mixed_site(sessions, 12, seed=7)
    before, _ = _page(sessions, limit=500)
    uid, other = before[4], before[6]
    # ``other`` was reported read elsewhere before it was read here.
    with writing(sessions) as s:
        close_study(s, study_instance_uid=other, reason=CLOSED_ELSEWHERE, actor="pacs")
    for study in (uid, other):
        with writing(sessions) as s:
            reads.mark_read(s, study_instance_uid=study, user="ann", top_band=TOP, confirmed=True)
    after_read, total = _page(sessions, limit=500)
    assert uid not in after_read and other not in after_read and total == 10
    with reading(sessions) as s:
        assert study_item(s, BANDS, uid, max_wait=MAX_WAIT, now=NOW)[1] is None

    with writing(sessions) as s:
        reads.undo_read(s, study_instance_uid=uid, user="ann", admin=False, window=WINDOW)
        reads.undo_read(s, study_instance_uid=other, user="ann", admin=False, window=WINDOW)
    again, total = _page(sessions, limit=500)
    # Back in its place; the study reported read elsewhere stays off the list.
    assert total == 11 and again == [u for u in before if u != other]
    with reading(sessions) as s:
        assert study_item(s, BANDS, uid, max_wait=MAX_WAIT, now=NOW)[1] is not None
