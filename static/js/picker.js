// The deep-linking picker: a click on a card chooses it, the bar counts what is chosen (on other
// pages too: another page or a search keeps the choices), and a click on a thumbnail or title
// plays the item in a dialog without leaving the picker (the choices stay as they are). Without
// scripts the links open the item in a new tab, and a page's links carry the choices made before it.
(function () {
  "use strict";

  var form = document.querySelector("form[data-picker]");
  var dialog = document.querySelector("dialog[data-preview]");
  if (!form) return;

  var count = form.querySelector("[data-count]");

  function choices() {
    return form.querySelectorAll("input[name=media_ids]");
  }

  // What is chosen: the boxes ticked here and the items kept from other pages.
  function chosenIds() {
    var ids = [];
    choices().forEach(function (input) { if (input.checked) ids.push(input.value); });
    form.querySelectorAll("input[name=kept_ids]").forEach(function (input) {
      if (ids.indexOf(input.value) === -1) ids.push(input.value);
    });
    return ids;
  }

  function showCount() {
    var n = chosenIds().length;
    count.textContent = n === 0 ? "None chosen" : n + " chosen";
  }

  // Where the platform takes one item, a choice here replaces one kept from another page.
  function dropKeptIfOne(input) {
    if (input.type !== "radio" || !input.checked) return;
    form.querySelectorAll("input[name=kept_ids]").forEach(function (kept) { kept.remove(); });
  }

  form.addEventListener("change", function (event) {
    if (event.target.name !== "media_ids") return;
    dropKeptIfOne(event.target);
    showCount();
  });

  // Another page or a search keeps the choices: they travel as `keep` in its address.
  form.addEventListener("click", function (event) {
    var link = event.target.closest(".pager a");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    var url = new URL(link.href);
    url.searchParams.delete("keep");
    chosenIds().forEach(function (id) { url.searchParams.append("keep", id); });
    window.location.assign(url.toString());
  });

  var search = document.querySelector("form[data-picker-search]");
  if (search) {
    search.addEventListener("submit", function () {
      search.querySelectorAll("input[data-keep]").forEach(function (input) { input.remove(); });
      chosenIds().forEach(function (id) {
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = "keep";
        input.value = id;
        input.setAttribute("data-keep", "");
        search.appendChild(input);
      });
    });
  }

  // The whole card chooses (its links and controls keep their own work).
  form.addEventListener("click", function (event) {
    if (event.target.closest("a, button, input, label, video, audio")) return;
    var card = event.target.closest(".card");
    var input = card && card.querySelector("input[name=media_ids]");
    if (!input) return;
    input.checked = input.type === "radio" ? true : !input.checked;
    dropKeptIfOne(input);
    showCount();
  });

  if (!dialog || typeof dialog.showModal !== "function") return;

  var title = dialog.querySelector("[data-preview-title]");
  var player = dialog.querySelector("[data-preview-player]");
  var opener = null;

  function preview(card, link) {
    var input = card.querySelector("input[data-preview-url]");
    opener = link;
    title.textContent = card.querySelector(".card-title").textContent.trim();
    player.textContent = "Loading…";
    dialog.showModal();
    fetch(input.dataset.previewUrl, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) {
        if (!dialog.open) return;
        player.innerHTML = html;
        // The player page's own start: HLS through hls.js, the processing notice's polling.
        if (window.mediaPlayer) window.mediaPlayer.start(player);
      })
      .catch(function () {
        player.textContent = "The preview could not be loaded. Open the item in a new tab instead.";
      });
  }

  form.addEventListener("click", function (event) {
    var link = event.target.closest(".card-thumb, .card-title a");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    preview(link.closest(".card"), link);
  });

  dialog.querySelector("[data-preview-close]").addEventListener("click", function () {
    dialog.close();
  });

  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener("click", function (event) {
    if (event.target === dialog) dialog.close();
  });

  dialog.addEventListener("close", function () {
    if (window.mediaPlayer) window.mediaPlayer.stop(player);
    player.textContent = ""; // stops the video
    if (opener) {
      // The thumbnail link is out of the Tab order: give focus to its card's title instead.
      var card = opener.closest(".card");
      var target = opener.classList.contains("card-thumb") ?
        card.querySelector(".card-title a") : opener;
      target.focus();
      opener = null;
    }
  });
})();
