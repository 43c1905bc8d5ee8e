// Writes each <time datetime="…" data-local> (a UTC instant) in the viewer's own time zone.
// Without script the page shows the time in UTC. Also run on content htmx swaps in.
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short"
  });
  function fill(root) {
    var times = (root || document).querySelectorAll("time[data-local]:not([data-filled])");
    for (var i = 0; i < times.length; i++) {
      var at = new Date(times[i].getAttribute("datetime"));
      if (isNaN(at.getTime())) continue;
      times[i].title = times[i].textContent;
      times[i].textContent = format.format(at);
      times[i].setAttribute("data-filled", "");
    }
  }
  document.addEventListener("htmx:load", function (event) { fill(event.target); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { fill(document); });
  } else {
    fill(document);
  }
})();
