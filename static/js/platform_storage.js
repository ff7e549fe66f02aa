// Platform Storage (1EdTech lti-cs-oidc, lti-pm-s): the login's state and nonce kept in the
// LMS's page when the browser blocks the tool's cookies in its iframe.
//   data-platform-storage="put": store each entry, then go to data-next (the LMS's sign-in).
//   data-platform-storage="get": read each entry back; when all match, post the launch again.
// Messages go to the frame the LMS named (data-target; `_parent`: the parent itself) with
// targetOrigin data-origin; answers count only from that origin and with our message_id.
// Each is sent in both spellings of its subject, lti.* and org.imsglobal.lti.* (Brightspace
// knows only the latter): the first good answer counts, an error only when both spellings fail.
// No answer within data-timeout ms, or an error answer: the new-window way out shows.
(function () {
  "use strict";
  var root = document.querySelector("[data-platform-storage]");
  if (!root) {
    return;
  }
  var mode = root.getAttribute("data-platform-storage");
  var target = root.getAttribute("data-target");
  var origin = root.getAttribute("data-origin");
  var entries = JSON.parse(root.getAttribute("data-entries") || "[]");
  var timeout = parseInt(root.getAttribute("data-timeout"), 10) || 4000;
  var pending = {};
  var finished = false;

  function fallback() {
    if (finished) {
      return;
    }
    finished = true;
    pending = {};
    root.querySelector("[data-storage-status]").hidden = true;
    root.querySelector("[data-storage-fallback]").hidden = false;
  }

  function storageFrame() {
    if (window.parent === window) {
      return window.opener || null;
    }
    if (target === "_parent") {
      return window.parent;
    }
    try {
      return window.parent.frames[target] || null;
    } catch (e) {
      return null;
    }
  }

  function messageId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  window.addEventListener("message", function (event) {
    var data = event.data;
    if (event.origin !== origin || !data || typeof data !== "object") {
      return;
    }
    var waiting = pending[data.message_id];
    if (!waiting || String(data.subject || "") !== waiting.subject + ".response") {
      return;
    }
    delete pending[data.message_id];
    waiting.answer(data);
  });

  function ask(frame, message, answer) {
    var id = messageId();
    pending[id] = {subject: message.subject, answer: answer};
    message.message_id = id;
    frame.postMessage(message, origin);
  }

  // One question in both spellings; `answer` gets the first good answer, or the last error.
  function askBoth(frame, message, answer) {
    var settled = false;
    var failed = 0;
    ["", "org.imsglobal."].forEach(function (prefix) {
      var spelled = {};
      Object.keys(message).forEach(function (name) { spelled[name] = message[name]; });
      spelled.subject = prefix + message.subject;
      ask(frame, spelled, function (data) {
        if (settled) {
          return;
        }
        if (data.error) {
          failed += 1;
          if (failed < 2) {
            return;
          }
        }
        settled = true;
        answer(data);
      });
    });
  }

  function each(frame, build, check, done) {
    var left = entries.length;
    entries.forEach(function (entry) {
      askBoth(frame, build(entry[0], entry[1]), function (data) {
        if (finished) {
          return;
        }
        if (data.error || !check(data, entry)) {
          fallback();
          return;
        }
        left -= 1;
        if (left === 0) {
          finished = true;
          done();
        }
      });
    });
  }

  var frame = storageFrame();
  if (!frame || !origin || !entries.length) {
    fallback();
    return;
  }
  window.setTimeout(fallback, timeout);
  if (mode === "put") {
    each(frame, function (key, value) {
      return {subject: "lti.put_data", key: key, value: value};
    }, function (data, entry) {
      return data.key === undefined || data.key === entry[0];
    }, function () {
      window.location.assign(root.getAttribute("data-next"));
    });
  } else if (mode === "get") {
    each(frame, function (key) {
      return {subject: "lti.get_data", key: key};
    }, function (data, entry) {
      return data.value === entry[1];
    }, function () {
      var form = root.querySelector("[data-storage-form]");
      form.elements.lti_storage_state.value = entries[0][1];
      form.submit();
    });
  } else {
    fallback();
  }
})();
