"""Launch-log viewer for support staff: filtered list, one entry, CSV export."""

from flask import (
    Blueprint,
    Response,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from .. import staff
from ..extensions import db
from ..models import LTILaunchLog
from ..services import audit, doctor, launches, platforms
from .forms import AuditFilterForm

bp = Blueprint("audit", __name__, url_prefix="/audit")
staff.guard(bp)


@bp.get("/")
def log_list():
    form = AuditFilterForm(request.args).offer(platforms.list_platforms(),
                                               sorted(doctor.CATEGORIES))
    filters = form.filters()
    entries, next_before = audit.search_launch_logs(filters, form.before.data)
    return render_template(
        "audit/list.html", form=form, entries=entries, next_before=next_before,
        count=audit.capped_count(filters), cap=audit.COUNT_CAP,
    )


@bp.get("/chart.svg")
def log_chart():
    """Launches per hour or day over the filtered range, failures stacked: plain SVG."""
    buckets, unit = audit.chart_buckets(AuditFilterForm(request.args).filters())
    peak = max([b.ok + b.failed for b in buckets] + [1])
    svg = render_template("audit/chart.svg", buckets=buckets, unit=unit, peak=peak)
    return Response(svg, mimetype="image/svg+xml",
                    headers={"Cache-Control": "private, no-store"})


@bp.get("/<int:id>")
def log_detail(id: int):
    entry = db.get_or_404(LTILaunchLog, id)
    fix = None
    if entry.error_category in doctor.CATEGORIES:
        details = (entry.claims or {}).get(launches.DOCTOR_DETAILS) or {}
        fix = doctor.fix_for(entry.error_category, details, entry.platform,
                             url_for("launch.launch", _external=True))
    return render_template("audit/detail.html", entry=entry, fix=fix,
                           neighbours=audit.neighbours(entry))


@bp.get("/export.csv")
def log_export():
    filters = AuditFilterForm(request.args).filters()
    return Response(
        stream_with_context(audit.csv_rows(filters)),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="launch-log.csv"'},
    )
