// Upload forms send their file in parts with tus (static/vendor/tus) where the browser can: a
// dropped connection or a closed laptop lid costs only the part in flight, and choosing the same
// file again (even after the tab was closed) carries on where it stopped. Browsers without it
// send the form with XMLHttpRequest to show progress; without scripts the form posts as usual.
(function () {
  var ENDPOINT = "/media/uploads/";
  var CHUNK_SIZE = 8 * 1024 * 1024; // bytes per request: under any proxy's body limit
  var RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000]; // ms
  var RESUME_DELAY = 20000; // ms between attempts once those are spent (offline for long)
  var OFFLINE = "Connection lost: the upload resumes when you are back online.";

  // As the server words sizes (errors.human_size): 512 KB, 2 MB, 1.5 GB.
  function humanSize(n) {
    var units = [["GB", 1073741824], ["MB", 1048576], ["KB", 1024]];
    for (var i = 0; i < units.length; i++) {
      if (n >= units[i][1]) {
        return (Math.round((n / units[i][1]) * 10) / 10).toString() + " " + units[i][0];
      }
    }
    return n + " bytes";
  }

  function status(form) {
    return form.querySelector("[data-status]");
  }

  function showError(form, message) {
    var box = form.querySelector("[data-error]");
    box.textContent = message;
    box.hidden = !message;
  }

  // The server's own words (a plain-text sentence) when it gave some, else a general hint.
  function errorMessage(error) {
    var response = error && error.originalResponse;
    if (response) {
      var type = response.getHeader("Content-Type") || "";
      var body = response.getBody();
      if (type.indexOf("text/plain") === 0 && body) return body;
      return "The upload was refused (error " + response.getStatus() + "): reload the page " +
        "and try again.";
    }
    return "The upload failed: check your connection and try again.";
  }

  function isRefusal(error) {
    var response = error && error.originalResponse;
    var code = response ? response.getStatus() : 0;
    return code >= 400 && code < 500 && code !== 409 && code !== 423;
  }

  function field(form, name) {
    var input = form.elements[name];
    return input ? input.value : "";
  }

  function sendWithTus(form, file) {
    var bar = form.querySelector("progress");
    var button = form.querySelector("button[type=submit]");
    var resumeTimer = null;
    var upload;

    function resume() {
      window.removeEventListener("online", resume);
      clearTimeout(resumeTimer);
      upload.start();
    }

    upload = new tus.Upload(file, {
      endpoint: ENDPOINT,
      chunkSize: CHUNK_SIZE,
      retryDelays: RETRY_DELAYS,
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      headers: { "X-CSRFToken": field(form, "csrf_token") },
      metadata: {
        filename: file.name,
        title: field(form, "title"),
        description: field(form, "description"),
        category: field(form, "category"),
        visibility: field(form, "visibility"),
        next: new URLSearchParams(window.location.search).get("next") || ""
      },
      onShouldRetry: function (error) {
        if (isRefusal(error)) return false;
        status(form).textContent = OFFLINE;
        return true;
      },
      onProgress: function (sent, total) {
        var percent = total ? Math.floor((sent / total) * 100) : 100;
        bar.value = percent;
        status(form).textContent = percent + "% uploaded (" + humanSize(sent) + " of " +
          humanSize(total) + ")";
      },
      onSuccess: function (result) {
        var response = result && result.lastResponse;
        var target = response && (response.getHeader("Upload-Next-Location") ||
                                  response.getHeader("Upload-Media-Location"));
        bar.value = 100;
        status(form).textContent = "Uploaded: opening the item…";
        window.location.assign(target || "/media/");
      },
      onError: function (error) {
        if (!isRefusal(error) && (error.originalRequest || !navigator.onLine)) {
          // Retries are spent but the network may come back: keep trying while the page is open.
          status(form).textContent = OFFLINE;
          window.addEventListener("online", resume);
          resumeTimer = setTimeout(resume, RESUME_DELAY);
          return;
        }
        bar.hidden = true;
        button.disabled = false;
        status(form).textContent = "";
        showError(form, errorMessage(error));
      }
    });

    bar.hidden = false;
    bar.value = 0;
    button.disabled = true;
    showError(form, "");
    status(form).textContent = "Starting the upload…";
    upload.findPreviousUploads().then(function (previous) {
      if (previous.length) {
        upload.resumeFromPreviousUpload(previous[0]);
      }
      upload.start();
    });
  }

  function sendWithXhr(form) {
    var bar = form.querySelector("progress");
    var button = form.querySelector("button[type=submit]");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("action") || window.location.href);
    bar.hidden = false;
    button.disabled = true;
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.round((e.loaded / e.total) * 100);
      bar.value = percent;
      status(form).textContent = percent + "% uploaded";
    };
    xhr.onload = function () {
      // Show the page the server answered with (the new item, or the form with its errors)
      // as it is: loading it again would lose its one-time messages.
      if (xhr.responseURL && xhr.status < 400) {
        window.history.replaceState(null, "", xhr.responseURL);
      }
      document.open();
      document.write(xhr.responseText);
      document.close();
    };
    xhr.onerror = function () {
      button.disabled = false;
      status(form).textContent = "The upload failed: check your connection and try again.";
    };
    xhr.send(new FormData(form));
  }

  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var file = form.elements.file && form.elements.file.files[0];
      // No file chosen: the server's form answers with its message beside the field.
      if (file && window.tus && tus.isSupported) {
        event.preventDefault();
        sendWithTus(form, file);
      } else if (window.FormData) {
        event.preventDefault();
        sendWithXhr(form);
      }
    });
  });
})();
