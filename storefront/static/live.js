// Live order updates (storefront/live.py): an element with data-live-url listens to the
// shopper's order events and reloads its fragment (data-live-fragment) when one arrives.
// Without JavaScript, EventSource or a broker the page is the same, just not live.
(function () {
  "use strict";

  // Whether a form inside root has the focus, or a field the shopper changed.
  function busy(root) {
    if (root.contains(document.activeElement) && document.activeElement.form) { return true; }
    var fields = root.querySelectorAll("input, select, textarea");
    for (var i = 0; i < fields.length; i += 1) {
      var field = fields[i];
      if (field.type === "checkbox" || field.type === "radio") {
        if (field.checked !== field.defaultChecked) { return true; }
      } else if (field.type !== "hidden" && field.value !== field.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function follow(root) {
    var state = document.getElementById("live-state");
    var source = new EventSource(root.getAttribute("data-live-url"));
    var opened = false;
    var timer = null;
    var loading = false;
    var again = false;
    var held = null; // a fetched fragment waiting for the shopper to finish a form
    var holdTimer = null;

    function show(text, name) {
      root.setAttribute("data-live", name);
      if (state) {
        state.textContent = text;
        state.hidden = !text;
        state.className = "live-state live-" + name;
      }
    }

    function load() {
      if (loading) { again = true; return; }
      loading = true;
      fetch(root.getAttribute("data-live-fragment"), { credentials: "same-origin" })
        .then(function (answer) {
          if (answer.redirected || answer.status === 401) {
            source.close();
            window.location.reload(); // the session ended: the page sends to the log-in
            return null;
          }
          return answer.ok ? answer.text() : null;
        })
        .then(function (html) {
          if (html !== null) { offer(html); }
        })
        .catch(function () { /* the next event or reconnection tries again */ })
        .then(function () {
          loading = false;
          if (again) { again = false; load(); }
        });
    }

    function swap(html) {
      held = null;
      clearTimeout(holdTimer);
      root.innerHTML = html;
      // Anything on the page that follows orders (the menu's inbox count) refreshes.
      document.body.dispatchEvent(new CustomEvent("shop-order"));
      var count = Number(root.getAttribute("data-live-updates") || "0") + 1;
      root.setAttribute("data-live-updates", String(count));
    }

    function offer(html) {
      if (!busy(root)) { swap(html); return; }
      // The shopper is filling a form in it (a cancellation's confirmation): the news
      // waits, fetched already, until they are done, rather than wiping what they entered.
      held = html;
      clearTimeout(holdTimer);
      holdTimer = setTimeout(settle, 1000);
    }

    function settle() {
      if (held !== null) { offer(held); }
    }

    // Done with the form: the focus left it (look once it has moved on) or a field changed.
    root.addEventListener("focusout", function () { setTimeout(settle, 0); });
    root.addEventListener("change", settle);

    function soon() {
      // Events come in bursts (placed, then completed): one reload for the burst.
      clearTimeout(timer);
      timer = setTimeout(load, 150);
    }

    source.addEventListener("open", function () {
      show("live", "on");
      if (opened) { soon(); } // back after a gap: what it shows may be stale
      opened = true;
    });
    source.addEventListener("order", soon);
    source.addEventListener("reload", soon);
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        show("", "off"); // refused (204, 401): the page stays as it is
      } else {
        show("reconnecting…", "reconnecting");
      }
    });
  }

  function start() {
    if (!window.EventSource || !window.fetch) { return; }
    var roots = document.querySelectorAll("[data-live-url]");
    for (var i = 0; i < roots.length; i += 1) { follow(roots[i]); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
