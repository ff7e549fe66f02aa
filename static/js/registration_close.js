// Registration pages: the close button tells the LMS that registration is over, so Moodle and
// Canvas close their dialog (Brightspace opened a tab: its opener gets the message).
document.querySelectorAll("button.lti-close").forEach(function (button) {
  button.addEventListener("click", function () {
    var target = window.opener || window.parent;
    if (target && target !== window) {
      target.postMessage({subject: "org.imsglobal.lti.close"}, "*");
    } else {
      window.close();
    }
  });
});
