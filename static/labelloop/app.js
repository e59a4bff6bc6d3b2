// Keyboard shortcuts for the annotator page: 1-9 answer, s skips.
// Also records how long the annotator looked at the task (duration_ms), sends the current CSRF
// token, and says so when an answer could not be sent.
(function () {
  "use strict";
  var shownAt = Date.now();

  // htmx has already read the form into detail.parameters when configRequest fires, so the time
  // goes into the parameters; writing the hidden field here would be too late.
  function stampDuration(event) {
    var form = event.detail.elt;
    if (form && form.querySelector && form.querySelector(".duration")) {
      event.detail.parameters.duration_ms = String(Date.now() - shownAt);
    }
  }

  // A login in another tab rotates the CSRF secret, which makes the token rendered into this page
  // stale; the cookie always has the current one.
  function sendCsrfCookie(event) {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) event.detail.headers["X-CSRFToken"] = decodeURIComponent(match[1]);
  }

  // htmx swaps nothing on an error status or a network failure; without a word the key press
  // would look as if it had been ignored.
  function showFailure(event) {
    var task = document.getElementById("task");
    if (!task) return;
    var xhr = event.detail.xhr;
    var why = xhr && xhr.status ? "the server answered " + xhr.status : "the server could not be reached";
    var notice = task.querySelector(".failure");
    if (!notice) {
      notice = document.createElement("p");
      notice.className = "notice failure";
      notice.setAttribute("role", "alert");
      task.querySelector(".task-head").insertAdjacentElement("afterend", notice);
    }
    notice.textContent = "Not sent: " + why + ". Try again, or reload the page.";
  }

  document.addEventListener("htmx:afterSwap", function () { shownAt = Date.now(); });
  document.addEventListener("htmx:configRequest", stampDuration);
  document.addEventListener("htmx:configRequest", sendCsrfCookie);
  document.addEventListener("htmx:responseError", showFailure);
  document.addEventListener("htmx:sendError", showFailure);

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    // A held key repeats: it must not answer the tasks that follow as well.
    if (event.repeat) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
    if (document.querySelector("#task.htmx-request, #task .htmx-request")) return;
    var button = null;
    if (/^[1-9]$/.test(event.key)) {
      button = document.querySelector('#task .answer[data-key="' + event.key + '"]');
    } else if (event.key === "s") {
      button = document.querySelector("#task .skip");
    }
    if (button) {
      event.preventDefault();
      button.click();
    }
  });
})();
