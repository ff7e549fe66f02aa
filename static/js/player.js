// The media player: HLS through hls.js where the browser has Media Source Extensions, native
// HLS where it plays it itself (Safari), else the MP4 in the element's src. While an item is
// being processed its notice asks for the status every few seconds and swaps in the player
// when it is ready (or the reason when it failed), without reloading the page. The picker's
// preview starts and stops the players it shows through window.mediaPlayer.
(function () {
  "use strict";

  function attach(root) {
    root.querySelectorAll("video[data-hls], audio[data-hls]").forEach(function (element) {
      var playlist = element.dataset.hls;
      var mp4 = element.getAttribute("src");
      if (window.Hls && window.Hls.isSupported()) {
        // No worker: the page's policy allows scripts from the tool's own files only.
        var hls = new window.Hls({ enableWorker: false });
        hls.on(window.Hls.Events.ERROR, function (event, data) {
          if (!data.fatal) return;
          // A playlist or segment that cannot be had: play the MP4 instead.
          hls.destroy();
          element.dataset.engine = "mp4";
          element.src = mp4;
        });
        hls.loadSource(playlist);
        hls.attachMedia(element);
        element.hlsPlayer = hls;
        element.dataset.engine = "hls.js";
      } else if (element.canPlayType("application/vnd.apple.mpegurl")) {
        element.src = playlist;
        element.dataset.engine = "native";
      } else {
        element.dataset.engine = "mp4";
      }
    });
  }

  function watch(root) {
    root.querySelectorAll("[data-processing]").forEach(function (box) {
      var notice = box.querySelector("[data-notice]");
      var every = (Number(box.dataset.pollSeconds) || 4) * 1000;

      function swap() {
        if (!box.isConnected) return; // the preview showing it was closed
        fetch(box.dataset.playerUrl, { credentials: "same-origin" })
          .then(function (response) {
            if (!response.ok) throw new Error(response.status);
            return response.text();
          })
          .then(function (html) {
            var holder = box.parentNode;
            holder.innerHTML = html;
            attach(holder);
            watch(holder);
          })
          .catch(function () { window.setTimeout(swap, every); });
      }

      function ask() {
        if (!box.isConnected) return;
        fetch(box.dataset.statusUrl, { credentials: "same-origin",
                                       headers: { Accept: "application/json" } })
          .then(function (response) {
            // Signed out or no longer allowed: asking again will not help.
            if (response.status >= 400 && response.status < 500) return null;
            if (!response.ok) throw new Error(response.status);
            return response.json();
          })
          .then(function (report) {
            if (report === null) return;
            notice.textContent = report.notice;
            if (report.status === "ready" || report.status === "failed") {
              swap();
            } else {
              window.setTimeout(ask, every);
            }
          })
          .catch(function () { window.setTimeout(ask, every * 2); });
      }

      // A failed item stays failed until someone tries again (which reloads the page).
      if (box.dataset.status === "failed") return;
      window.setTimeout(ask, every);
    });
  }

  // Stop what `attach` started under `root` (hls.js goes on loading a removed element's video).
  function stop(root) {
    root.querySelectorAll("video, audio").forEach(function (element) {
      element.pause();
      if (element.hlsPlayer) {
        element.hlsPlayer.destroy();
        element.hlsPlayer = null;
      }
    });
  }

  window.mediaPlayer = {
    start: function (root) { attach(root); watch(root); },
    stop: stop
  };
  attach(document);
  watch(document);
})();
