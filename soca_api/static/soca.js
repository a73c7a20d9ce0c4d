/* soca-api web interface: small conveniences only. Every page works without this file.
 *  - [data-refresh-ms]: fetch this same page every N ms and swap in the [data-live] parts;
 *  - #output[data-follow="1"]: follow a running job's output (offset / next_offset);
 *  - [data-copy]: copy an element's text; the key reveal fills the curl examples;
 *  - filter forms submit on change; the Submit page picks the queue named by #PBS -q.
 */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  // -- copy -------------------------------------------------------------------------------
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "sr-only";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }

  function flashLabel(button, text) {
    var label = button.querySelector("span") || button;
    var before = label.textContent;
    label.textContent = text;
    button.disabled = true;
    setTimeout(function () { label.textContent = before; button.disabled = false; }, 1400);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    copyText(source.textContent.trim()).then(
      function () { flashLabel(button, "Copied"); },
      function () { flashLabel(button, "Select and copy"); }
    );
  });

  // -- key reveal: the examples get the real key while it is shown --------------------------
  function setupReveal() {
    var toggle = document.getElementById("reveal-key");
    var key = document.querySelector("[data-key]");
    if (!toggle || !key) return;
    var slots = document.querySelectorAll("[data-key-slot]");
    var placeholder = slots.length ? slots[0].textContent : "";
    toggle.addEventListener("change", function () {
      slots.forEach(function (slot) { slot.textContent = toggle.checked ? key.textContent : placeholder; });
    });
  }

  // -- filters submit on change --------------------------------------------------------------
  function setupAutosubmit() {
    document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      form.querySelectorAll("[data-hide-with-js]").forEach(function (el) { el.hidden = true; });
      form.addEventListener("change", function () { form.submit(); });
    });
  }

  // -- live refresh: same URL, swap the [data-live] elements ---------------------------------
  function busy(element) {
    // Do not pull a panel away from under the user: an open confirmation, a focused field.
    var active = document.activeElement;
    return element.querySelector("details.confirm[open]") ||
      (active && active !== document.body && element.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName));
  }

  function setupRefresh() {
    var root = document.querySelector("[data-refresh-ms]");
    if (!root) return;
    var period = Math.max(1000, parseInt(root.getAttribute("data-refresh-ms"), 10) || 5000);
    var stopped = false;
    function tick() {
      if (stopped) return;
      if (document.hidden) { setTimeout(tick, period); return; }
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (!response.ok || response.redirected) { stopped = true; return null; }
          return response.text();
        })
        .then(function (html) {
          if (html === null || html === undefined) return;
          var fresh = new DOMParser().parseFromString(html, "text/html");
          document.querySelectorAll("[data-live][id]").forEach(function (element) {
            var next = fresh.getElementById(element.id);
            if (next && !busy(element) && next.innerHTML !== element.innerHTML) element.innerHTML = next.innerHTML;
          });
          if (!fresh.querySelector("[data-refresh-ms]")) stopped = true;  // e.g. the job finished
        })
        .catch(function () { /* network hiccup: try again next time */ })
        .then(function () { if (!stopped) setTimeout(tick, period); });
    }
    setTimeout(tick, period);
  }

  // -- output follower ------------------------------------------------------------------------
  function setupOutput() {
    var pre = document.getElementById("output");
    if (!pre || pre.getAttribute("data-follow") !== "1") return;
    var status = document.getElementById("output-status");
    var url = pre.getAttribute("data-url");
    var offset = parseInt(pre.getAttribute("data-offset"), 10) || 0;
    var card = pre.closest(".card");
    if (card) card.classList.add("following");
    function atBottom() { return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40; }
    function stop(message) {
      if (card) card.classList.remove("following");
      if (status) status.textContent = message;
    }
    function poll() {
      var sep = url.indexOf("?") < 0 ? "?" : "&";
      fetch(url + sep + "offset=" + offset, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) { return response.json().then(function (body) { return [response.status, body]; }); })
        .then(function (result) {
          var code = result[0], body = result[1];
          if (code !== 200 || !body.success) { stop(body.message || "Output unavailable"); return; }
          if (body.data) {
            var stick = atBottom();
            pre.appendChild(document.createTextNode(body.data));
            if (stick) pre.scrollTop = pre.scrollHeight;
          }
          offset = body.next_offset;
          pre.setAttribute("data-offset", String(offset));
          if (body.finished && body.eof) { stop(body.message && !body.data && !pre.textContent ? body.message : "Job finished"); return; }
          if (status) status.textContent = body.message && !pre.textContent ? body.message + " Waiting…" : "Following the file while the job runs";
          setTimeout(poll, body.eof ? 1500 : 150);
        })
        .catch(function () { setTimeout(poll, 3000); });
    }
    poll();
  }

  // -- submit page: the queue select follows the script's #PBS -q -----------------------------
  function setupQueuePick() {
    var script = document.getElementById("script");
    var select = document.getElementById("queue");
    if (!script || !select) return;
    var touched = false;
    select.addEventListener("change", function () { touched = true; });
    script.addEventListener("input", function () {
      if (touched) return;
      var lines = script.value.split(/\r?\n/);
      for (var i = 0; i < lines.length; i++) {
        var text = lines[i].trim();
        if (!text) continue;
        if (text.charAt(0) !== "#") break;
        var match = /^#PBS\s+-q\s*([A-Za-z][A-Za-z0-9_-]{0,14})\s*(#.*)?$/.exec(text);
        if (match) {
          for (var j = 0; j < select.options.length; j++) {
            if (select.options[j].value === match[1]) select.value = match[1];
          }
        }
      }
    });
  }

  // Confirmation panels close on Escape or a click elsewhere (they work without this too).
  function setupConfirmPanels() {
    function closeAll(except) {
      document.querySelectorAll("details.confirm[open]").forEach(function (panel) {
        if (panel !== except) panel.removeAttribute("open");
      });
    }
    document.addEventListener("click", function (event) { closeAll(event.target.closest("details.confirm")); });
    document.addEventListener("keydown", function (event) { if (event.key === "Escape") closeAll(null); });
  }

  // On a narrow screen the menu scrolls sideways: keep the current page's entry in view.
  function showActiveNav() {
    var active = document.querySelector(".nav .active");
    var nav = active && active.parentElement;
    if (nav && nav.scrollWidth > nav.clientWidth) {
      nav.scrollLeft = active.offsetLeft - nav.offsetLeft - (nav.clientWidth - active.offsetWidth) / 2;
    }
  }

  ready(function () {
    showActiveNav();
    window.addEventListener("resize", showActiveNav);
    setupReveal();
    setupConfirmPanels();
    setupAutosubmit();
    setupRefresh();
    setupOutput();
    setupQueuePick();
  });
})();
