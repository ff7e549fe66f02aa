// Upload forms send their file with XMLHttpRequest to show progress; without scripts the
// form posts as usual.
document.querySelectorAll("form[data-upload]").forEach(function (form) {
  form.addEventListener("submit", function (event) {
    if (!window.FormData) return;
    event.preventDefault();
    var bar = form.querySelector("progress");
    var status = form.querySelector("[data-status]");
    var button = form.querySelector("button[type=submit]");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("action") || window.location.href);
    bar.hidden = false;
    button.disabled = true;
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.round((e.loaded / e.total) * 100);
      bar.value = percent;
      status.textContent = percent + "% uploaded";
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
      status.textContent = "The upload failed: check your connection and try again.";
    };
    xhr.send(new FormData(form));
  });
});
