// A course's media and one's own: choosing another sort shows the media in that order at once
// (the Search button does the same without script).
document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
  "use strict";
  select.addEventListener("change", function () { select.form.submit(); });
});
