// productlens review app: keyboard shortcuts, the category type-ahead and the browse tree.
// Vanilla JS; text from the server is only ever set with textContent (never innerHTML).
(function () {
  "use strict";

  function typing(event) {
    var t = event.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function onKeys(map) {
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
      var f = map[event.key];
      if (f) {
        event.preventDefault();
        f(event);
      }
    });
  }

  function click(id) {
    return function () {
      var b = document.getElementById(id);
      if (b) b.click();
    };
  }

  function follow(id) {
    return function () {
      var a = document.getElementById(id);
      if (a) window.location.href = a.href;
    };
  }

  // -- the queue: j/k select a row, Enter opens it ------------------------------------------
  function queuePage() {
    var rows = Array.prototype.slice.call(document.querySelectorAll("table.queue tbody tr"));
    var at = -1;
    function select(k) {
      if (!rows.length) return;
      at = Math.max(0, Math.min(rows.length - 1, k));
      rows.forEach(function (r, i) { r.classList.toggle("selected", i === at); });
      rows[at].scrollIntoView({ block: "nearest" });
    }
    onKeys({
      j: function () { select(at + 1); },
      k: function () { select(at - 1); },
      Enter: function () { if (at >= 0) window.location.href = rows[at].dataset.href; },
    });
  }

  // -- the category picker -------------------------------------------------------------------
  function picker() {
    var root = document.getElementById("picker");
    if (!root) return null;
    var hidden = document.getElementById("category-id");
    var chosen = document.getElementById("category-chosen");
    var input = document.getElementById("category-search");
    var list = document.getElementById("category-suggestions");
    var results = [];
    var active = -1;
    var timer = null;
    var seq = 0;

    function choose(id, fullName) {
      hidden.value = id;
      chosen.textContent = fullName;
      close();
    }

    function close() {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      active = -1;
    }

    function highlight(k) {
      var items = list.querySelectorAll("li[role=option]");
      if (!items.length) return;
      active = (k + items.length) % items.length;
      items.forEach(function (li, i) { li.setAttribute("aria-selected", i === active ? "true" : "false"); });
      items[active].scrollIntoView({ block: "nearest" });
    }

    function render(found) {
      results = found;
      list.textContent = "";
      if (!found.length) {
        list.appendChild(el("li", "none", "No category matches."));
      }
      found.forEach(function (m, i) {
        var li = el("li");
        li.setAttribute("role", "option");
        li.id = "suggestion-" + i;
        li.dataset.id = m.id;
        var parts = m.full_name.split(" > ");
        li.appendChild(el("div", "leaf", parts[parts.length - 1]));
        li.appendChild(el("div", "trail", m.full_name));
        if (m.locale !== "en") li.appendChild(el("div", "matched", m.locale + ": " + m.matched));
        li.addEventListener("mousedown", function (event) {
          event.preventDefault(); // keep the focus in the input
          choose(m.id, m.full_name);
        });
        list.appendChild(li);
      });
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      active = -1;
      if (found.length) highlight(0);
    }

    function search() {
      var q = input.value.trim();
      if (!q) { close(); return; }
      var mine = ++seq;
      getJSON(root.dataset.search + "?limit=20&q=" + encodeURIComponent(q)).then(function (body) {
        if (mine === seq) render(body.results);
      }).catch(function () {
        if (mine === seq) { list.textContent = ""; list.appendChild(el("li", "none", "Search failed; retry.")); list.hidden = false; }
      });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(search, 120);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown") { event.preventDefault(); highlight(active + 1); }
      else if (event.key === "ArrowUp") { event.preventDefault(); highlight(active - 1); }
      else if (event.key === "Enter") {
        event.preventDefault(); // Enter picks a suggestion; it never submits the decision
        if (!list.hidden && active >= 0 && results[active]) choose(results[active].id, results[active].full_name);
      } else if (event.key === "Escape") {
        close();
        input.blur();
      }
    });
    input.addEventListener("blur", function () { setTimeout(close, 150); });

    document.querySelectorAll("button.pick").forEach(function (b) {
      b.addEventListener("click", function () { choose(b.dataset.id, b.dataset.name); });
    });

    // The browse tree: one level at a time, loaded when opened.
    var tree = document.getElementById("tree");
    var details = document.getElementById("browse");
    function node(c) {
      var li = el("li");
      li.setAttribute("role", "treeitem");
      var toggle = el("button", "toggle", c.has_children ? "▸" : "");
      toggle.type = "button";
      toggle.disabled = !c.has_children;
      toggle.setAttribute("aria-label", "expand " + c.name);
      var name = el("button", "link", c.name);
      name.type = "button";
      name.title = c.full_name;
      name.addEventListener("click", function () { choose(c.id, c.full_name); });
      li.appendChild(toggle);
      li.appendChild(name);
      var sub = null;
      toggle.addEventListener("click", function () {
        if (sub) {
          sub.hidden = !sub.hidden;
          toggle.textContent = sub.hidden ? "▸" : "▾";
          return;
        }
        sub = el("ul");
        sub.setAttribute("role", "group");
        li.appendChild(sub);
        toggle.textContent = "▾";
        load(c.short_id, sub);
      });
      return li;
    }
    function load(id, into) {
      into.appendChild(el("li", "muted", "loading…"));
      getJSON(root.dataset.children + "/" + encodeURIComponent(id) + "/children").then(function (body) {
        into.textContent = "";
        body.children.forEach(function (c) { into.appendChild(node(c)); });
      }).catch(function () { into.textContent = ""; into.appendChild(el("li", "muted", "could not load")); });
    }
    if (details && tree) {
      details.addEventListener("toggle", function () {
        if (details.open && !tree.childElementCount) load("root", tree);
      });
    }
    return input;
  }

  function itemPage() {
    var input = picker();
    onKeys({
      a: click("approve"),
      r: click("reject"),
      s: click("skip"),
      j: follow("next-item"),
      k: follow("prev-item"),
      "/": function () { if (input) input.focus(); },
    });
  }

  function ratePage() {
    onKeys({ 1: click("verdict-1"), 2: click("verdict-2"), 3: click("verdict-3") });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.dataset.page;
    if (page === "queue") queuePage();
    else if (page === "item") itemPage();
    else if (page === "rate") ratePage();
  });
})();
