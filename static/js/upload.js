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
  var PROCESSING = "Uploaded. It is being processed now — you can already add it to the course.";

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

  // "the file is too large" -> "The file is too large."
  function sentence(text) {
    text = text.trim();
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?…]$/.test(text) ? text : text + ".";
  }

  // The server's own words (a plain-text sentence) when it gave some, else a general hint.
  function errorMessage(error) {
    var response = error && error.originalResponse;
    if (response) {
      var type = response.getHeader("Content-Type") || "";
      var body = response.getBody();
      if (type.indexOf("text/plain") === 0 && body) return sentence(body);
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

  // While the file goes up its details cannot change: every field and the button are disabled
  // (and look it); Cancel stays.
  function busy(form, on) {
    var fields = form.querySelector("[data-upload-fields]");
    if (fields) fields.disabled = on;
    form.querySelector("button[type=submit]").disabled = on;
    form.setAttribute("aria-busy", on ? "true" : "false");
  }

  // What the page says once every byte is there, before it moves on.
  function doneMessage(form, file) {
    var processed = /^(video|audio)\//.test(file.type || "") ||
      /\.(mp4|m4v|mov|webm|ogv|ogg|oga|mp3|m4a|wav|flac)$/i.test(file.name);
    if (form.hasAttribute("data-from-picker")) {
      return (processed ? PROCESSING : "Uploaded: you can add it to the course now.") +
        " Going back to the list…";
    }
    return processed ? "Uploaded. It is being processed now: opening the item…" :
      "Uploaded: opening the item…";
  }

  // "lecture_04-intro.mp4" -> "lecture 04 intro" (forms.title_from_filename does the same).
  function titleFrom(name) {
    var stem = name.replace(/\\/g, "/").split("/").pop();
    if (stem.replace(/^\.+|\.+$/g, "").indexOf(".") !== -1) {
      stem = stem.slice(0, stem.lastIndexOf("."));
    }
    return stem.replace(/[_-]+/g, " ").replace(/\s+/g, " ").trim();
  }

  // The title follows the chosen file's name until someone types their own.
  function fillTitle(form) {
    var file = form.elements.file;
    var title = form.elements.title;
    if (!file || !title) return;
    var filled = "";
    file.addEventListener("change", function () {
      var chosen = file.files && file.files[0];
      if (!chosen || (title.value.trim() && title.value !== filled)) return;
      filled = titleFrom(chosen.name);
      title.value = filled;
    });
  }

  function sendWithTus(form, file) {
    var bar = form.querySelector("progress");
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
        form.uploadInProgress = null;
        status(form).textContent = doneMessage(form, file);
        status(form).classList.add("upload-done");
        // A moment to read it before the next page.
        setTimeout(function () { window.location.assign(target || "/media/"); }, 1200);
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
        form.uploadInProgress = null;
        busy(form, false);
        status(form).textContent = "";
        showError(form, errorMessage(error));
      }
    });

    bar.hidden = false;
    bar.value = 0;
    form.uploadInProgress = upload;
    busy(form, true);
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
    var xhr = new XMLHttpRequest();
    var data = new FormData(form); // before the fields are disabled: disabled fields are not sent
    var file = form.elements.file && form.elements.file.files[0];
    xhr.open("POST", form.getAttribute("action") || window.location.href);
    bar.hidden = false;
    busy(form, true);
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.round((e.loaded / e.total) * 100);
      bar.value = percent;
      status(form).textContent = percent + "% uploaded";
    };
    xhr.upload.onload = function () {
      if (file) status(form).textContent = doneMessage(form, file);
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
      busy(form, false);
      status(form).textContent = "The upload failed: check your connection and try again.";
    };
    xhr.send(data);
  }

  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    fillTitle(form);
    var cancel = form.querySelector("[data-cancel]");
    if (cancel) {
      // Cancel during an upload stops it and drops what the server kept of it.
      cancel.addEventListener("click", function (event) {
        var upload = form.uploadInProgress;
        if (!upload) return;
        event.preventDefault();
        form.uploadInProgress = null;
        upload.abort(true).catch(function () {}).then(function () {
          window.location.assign(cancel.href);
        });
      });
    }
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
