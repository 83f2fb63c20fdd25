// Follows the spawn progress stream and moves on to JupyterLab when the server is ready.
// The stream replays every step of the current start before following it, so a reload
// (or a reconnect) redraws the whole list.
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

  // Not running: start it right away, unless there is an image to choose first.
  if (box.dataset.state === "stopped" && !document.getElementById("image")) {
    form.submit();
    return;
  }
  if (box.dataset.state !== "starting") {
    if (box.dataset.state === "failed") button.focus();  // failed before the page loaded
    return;
  }

  var source = new EventSource(box.dataset.progress);
  var fresh = true;
  source.onopen = function () { fresh = true; };
  source.onmessage = function (event) {
    var step = JSON.parse(event.data);
    if (fresh) {  // first step of a (re)connection: the replay starts from the beginning
      steps.replaceChildren();
      fresh = false;
    }
    if (!step.failed) bar.value = step.progress;
    bar.hidden = !!step.failed;
    message.textContent = step.message;
    message.className = step.failed ? "error" : "";
    var previous = steps.querySelector(".current");
    if (previous && previous.dataset.phase === "queued" && step.phase === "queued") {
      previous.textContent = step.message;  // the queue moved: update, do not add
      return;
    }
    if (previous) previous.className = "done";
    var item = document.createElement("li");
    item.textContent = step.failed ? "The start failed" : step.message;
    item.dataset.phase = step.phase;
    item.className = step.failed ? "failed" : "current";
    if (!step.failed || steps.children.length) steps.appendChild(item);
    if (step.ready) {
      source.close();
      item.className = "done";
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
    if (source.readyState === EventSource.CLOSED) {
      message.textContent = "Lost contact with the hub; reload the page.";
    } else {
      message.textContent = "Lost contact with the hub; retrying…";
    }
  };
})();
