// The page came as the answer to an LTI launch (a POST to /lti/launch). Give its entry in the
// frame's history the page's own address, so that reloading the frame asks for the page and
// not for the launch again (its id_token is used up).
(function () {
  "use strict";
  var address = document.currentScript && document.currentScript.dataset.address;
  if (address && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", address);
  }
})();
