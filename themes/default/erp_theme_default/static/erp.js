// The default theme's small behaviours. Everything works without this file; it adds
// auto-submitting selects, modal dialogs, "select all", the small-screen menu and htmx settings.
(function () {
  "use strict";
  document.documentElement.classList.replace("no-js", "js");

  if (window.htmx) {
    // Validation errors (422) and dependency conflicts (409) come back as HTML to show in place.
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "409", swap: true, error: false },
      { code: "422", swap: true, error: false },
      { code: "[45]..", swap: false, error: true },
    ];
    htmx.config.includeIndicatorStyles = true;
  }

  function openModals(root) {
    root.querySelectorAll("dialog[data-open-modal]").forEach(function (d) {
      if (d.open && !d.matches(":modal")) { d.close(); }
      if (!d.open) { d.showModal(); }
    });
  }

  document.addEventListener("click", function (e) {
    var opener = e.target.closest("[data-open-dialog]");
    if (opener) {
      var d = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (d && d.showModal) {
        e.preventDefault();
        d.showModal();
        var first = d.querySelector("input:not([type=hidden]), select, textarea");
        if (first) { first.focus(); }
      }
      return;
    }
    var toggle = e.target.closest("[data-nav-toggle]");
    if (toggle) {
      var nav = document.getElementById(toggle.getAttribute("aria-controls"));
      var open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      if (nav) { nav.classList.toggle("is-open", open); }
    }
  });

  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.matches("[data-autosubmit]") && t.form) {
      t.form.requestSubmit();
    } else if (t.matches("[data-select-all]")) {
      var formId = t.getAttribute("data-select-all");
      document.querySelectorAll('input[name="ids"][form="' + formId + '"]').forEach(function (box) {
        box.checked = t.checked;
      });
    }
  });

  document.addEventListener("focusin", function (e) {
    if (e.target.matches("[data-select-on-focus]")) { e.target.select(); }
  });

  // Escape closes an open user menu or column chooser and returns focus to it.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") { return; }
    var open = e.target.closest("details[open]");
    if (open) {
      open.removeAttribute("open");
      var summary = open.querySelector("summary");
      if (summary) { summary.focus(); }
    }
  });

  document.addEventListener("htmx:responseError", function (e) {
    var area = document.getElementById("flash");
    if (!area) { return; }
    var p = document.createElement("p");
    p.className = "flash flash-error";
    p.setAttribute("role", "alert");
    var xhr = e.detail.xhr;
    var text = document.body.getAttribute("data-error-text") || "Error";
    if (xhr && xhr.responseText) {
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var detail = doc.querySelector(".error-detail, #error-title");
      if (detail && detail.textContent.trim()) { text = detail.textContent.trim(); }
    }
    p.textContent = text;
    area.replaceChildren(p);
  });

  document.addEventListener("DOMContentLoaded", function () { openModals(document); });
  document.addEventListener("htmx:load", function (e) { openModals(e.detail.elt.parentElement || document); });
})();
