// The annotator's desk: 1-9 answer, s skips, u undoes the last answer, ? shows the keys.
// The next task is already on the page (#next, leased and rendered by the server): an answer swaps
// it in at once and the request that stores the answer brings the task after it, so the page never
// waits between tasks. Actions made while a request is out are queued and run in order. If a
// request fails, the task it was about comes back on screen and the page says why.
(function () {
  "use strict";
  var shownAt = Date.now();
  var busy = false;
  var waiting = [];
  var restore = null; // what to put back if the request about the task just left fails

  function $(selector) { return document.querySelector(selector); }
  function desk() { return document.getElementById("desk"); }
  function shownTask() { var s = $("#task .sample"); return s ? s.dataset.task : ""; }

  function send(path, values, target) {
    busy = true;
    values.showing = shownTask();
    window.htmx.ajax("POST", desk().dataset.base + path, { target: target, swap: "innerHTML", values: values });
  }

  function moveChildren(from, to) {
    to.replaceChildren.apply(to, Array.prototype.slice.call(from.childNodes));
  }

  // Show the task fetched ahead; #next stays empty until the server sends the one after it.
  function promote() {
    var task = document.getElementById("task"), next = document.getElementById("next");
    var old = document.createElement("div");
    moveChildren(task, old);
    moveChildren(next, task);
    shownAt = Date.now();
    task.focus({ preventScroll: true });
    return old;
  }

  function advance(action, label) {
    var id = shownTask();
    if (!id) return;
    var values = action === "answer" ? { label: label, duration_ms: String(Date.now() - shownAt) } : {};
    restore = promote();
    send("" + id + "/" + action + "/", values, "#next");
  }

  function undo() {
    var button = $("#undo button.undo");
    if (!button) return;
    restore = null;
    send("" + button.dataset.task + "/undo/", {}, "#desk");
  }

  function run(action) {
    if (action[0] === "undo") undo();
    else advance(action[0], action[1]);
  }

  function act(kind, label) {
    if (!desk()) return;
    if (busy) waiting.push([kind, label]);
    else run([kind, label]);
  }

  // htmx swaps nothing on an error status or a network failure: put the task back, and say so.
  function showFailure(event) {
    var xhr = event.detail.xhr;
    if (restore) {
      var task = document.getElementById("task"), next = document.getElementById("next");
      moveChildren(task, next);
      moveChildren(restore, task);
      restore = null;
    }
    waiting = [];
    var why = xhr && xhr.status ? "the server answered " + xhr.status : "the server could not be reached";
    var notice = document.getElementById("notice");
    if (notice) {
      notice.innerHTML = "";
      var p = document.createElement("p");
      p.className = "notice failure";
      p.setAttribute("role", "alert");
      p.textContent = "Not sent: " + why + ". Try again, or reload the page.";
      notice.appendChild(p);
    }
  }

  function afterRequest(event) {
    if (!desk() || !desk().contains(event.detail.target)) return;
    busy = false;
    if (event.detail.successful) restore = null;
    var undoButton = $("#undo button.undo");
    if (undoButton && !undoButton.dataset.timer) {
      undoButton.dataset.timer = "1";
      window.setTimeout(function () { undoButton.remove(); }, 1000 * Number(undoButton.dataset.seconds || 0));
    }
    if (!$("#task .sample") && $("#next .sample")) {
      // The queue was empty and has work again: show it and fetch the one after it.
      promote();
      send("next/", {}, "#next");
    } else if (waiting.length) {
      run(waiting.shift());
    }
  }

  // A login in another tab rotates the CSRF secret, which makes the token rendered into this page
  // stale; the cookie always has the current one.
  function sendCsrfCookie(event) {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) event.detail.headers["X-CSRFToken"] = decodeURIComponent(match[1]);
  }

  function toggleHelp() {
    var help = document.getElementById("help");
    if (!help) return;
    if (help.open) help.close();
    else help.showModal();
  }

  // Say so when the lease on the task on screen has run out (the server refuses the answer then).
  function checkLease() {
    var sample = $("#task .sample"), notice = document.getElementById("notice");
    if (!sample || !notice || sample.dataset.warned || !sample.dataset.expires) return;
    if (Date.parse(sample.dataset.expires) <= Date.now()) {
      sample.dataset.warned = "1";
      notice.innerHTML = "";
      var p = document.createElement("p");
      p.className = "notice expired";
      p.textContent = "Your lease on this task expired: it went back to the queue. Skip it (s) to get another one.";
      notice.appendChild(p);
    }
  }
  window.setInterval(checkLease, 1000);

  document.addEventListener("htmx:configRequest", sendCsrfCookie);
  document.addEventListener("htmx:responseError", showFailure);
  document.addEventListener("htmx:sendError", showFailure);
  document.addEventListener("htmx:afterRequest", afterRequest);
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "desk") {
      shownAt = Date.now();
      document.getElementById("task").focus({ preventScroll: true });
    }
  });

  // The answer and skip buttons submit plain htmx forms (the page without this script); here they
  // swap in the task fetched ahead instead, so the click's default (the form's submit) is prevented.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button");
    if (!button || !desk() || !desk().contains(button)) return;
    if (button.classList.contains("answer") && button.closest("#task")) {
      event.preventDefault();
      act("answer", button.value);
    } else if (button.classList.contains("skip") && button.closest("#task")) {
      event.preventDefault();
      act("skip");
    } else if (button.classList.contains("undo")) act("undo");
    else if (button.classList.contains("help-open")) toggleHelp();
  });

  document.addEventListener("keydown", function (event) {
    if (!desk() || event.ctrlKey || event.metaKey || event.altKey) return;
    // A held key repeats: it must not answer the tasks that follow as well.
    if (event.repeat) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
    if (event.key === "?") { event.preventDefault(); toggleHelp(); return; }
    var help = document.getElementById("help");
    if (help && help.open) return;
    var button = null;
    if (/^[1-9]$/.test(event.key)) button = $('#task .answer[data-key="' + event.key + '"]');
    else if (event.key === "s") button = $("#task .skip");
    else if (event.key === "u") button = $("#undo button.undo");
    if (button) {
      event.preventDefault();
      button.click();
    }
  });
})();
