// Keyboard shortcuts for the annotator page: 1-9 answer, s skips.
// Also records how long the annotator looked at the task (duration_ms).
(function () {
  "use strict";
  var shownAt = Date.now();

  function stampDuration() {
    var field = document.querySelector("#task .duration");
    if (field) field.value = String(Date.now() - shownAt);
  }

  document.addEventListener("htmx:afterSwap", function () { shownAt = Date.now(); });
  document.addEventListener("htmx:configRequest", stampDuration);

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) return;
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
