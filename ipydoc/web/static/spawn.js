// Follows the spawn progress stream and moves on to JupyterLab when the server is ready.
(function () {
  "use strict";
  var box = document.getElementById("spawn");
  if (!box) return;
  var bar = document.getElementById("bar");
  var message = document.getElementById("message");
  var title = document.getElementById("title");
  var steps = document.getElementById("steps");
  var form = document.getElementById("start-form");
  var button = document.getElementById("start-button");
  var next = box.dataset.next;

  if (box.dataset.state === "stopped") {  // not running: start it right away
    form.submit();
    return;
  }
  if (box.dataset.state !== "starting") return;

  var source = new EventSource(box.dataset.progress);
  source.onmessage = function (event) {
    var step = JSON.parse(event.data);
    bar.value = step.progress;
    message.textContent = step.message;
    var item = document.createElement("li");
    item.textContent = step.message;
    item.dataset.phase = step.phase;
    steps.appendChild(item);
    if (step.ready) {
      source.close();
      title.textContent = "Your server is ready";
      window.location.assign(next || step.url);
    } else if (step.failed || step.phase === "stopped") {
      source.close();
      title.textContent = step.failed ? "Your server could not start" : "Your server is not running";
      button.textContent = step.failed ? "Try again" : "Start my server";
      form.hidden = false;
      button.focus();
    }
  };
  source.onerror = function () {
    message.textContent = "Lost contact with the hub; retrying…";
  };
})();
