// The dashboard's own script: the CSRF token on every htmx request, and the climate chart.
"use strict";

document.addEventListener("htmx:configRequest", function (event) {
  var token = document.querySelector('meta[name="csrf-token"]');
  if (token) {
    event.detail.headers["X-CSRF-Token"] = token.content;
  }
});

function drawClimate(holder) {
  var url = holder.dataset.source;
  var labels = JSON.parse(holder.dataset.labels);
  fetch(url, { credentials: "same-origin" })
    .then(function (response) { return response.json(); })
    .then(function (data) {
      var xs = [], tMean = [], tMin = [], tMax = [], hMean = [];
      data.points.forEach(function (p) {
        xs.push(Date.parse(p.at) / 1000);
        tMean.push(p.t_mean); tMin.push(p.t_min); tMax.push(p.t_max); hMean.push(p.h_mean);
      });
      var lim = data.limits;
      var flat = function (v) { return xs.map(function () { return v; }); };
      var local = function (ts) { return uPlot.tzDate(new Date(ts * 1000), holder.dataset.zone); };
      var span = xs.length > 1 ? xs[xs.length - 1] - xs[0] : 0;
      // Ticks as people read times: seconds only for a few minutes, days for weeks.
      var tick = uPlot.fmtDate(span < 3600 ? "{HH}:{mm}:{ss}" : span < 2 * 86400 ? "{HH}:{mm}"
        : span < 400 * 86400 ? "{MM}-{DD}" : "{YYYY}-{MM}");
      var when = uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}");
      var opts = {
        width: Math.max(320, holder.clientWidth - 8),
        height: 340,
        tzDate: local,
        scales: { x: { time: true }, h: { range: [0, 100] } },
        series: [
          { label: labels.at, value: function (u, ts) { return ts == null ? "--" : when(local(ts)); } },
          { label: labels.t, stroke: "#c0392b", width: 2, scale: "°C" },
          { label: labels.tmin, stroke: "#e6a0a0", width: 1, scale: "°C" },
          { label: labels.tmax, stroke: "#e6a0a0", width: 1, scale: "°C" },
          { label: labels.h, stroke: "#2471a3", width: 2, scale: "h" },
          { label: labels.tlo, stroke: "#c0392b", dash: [6, 4], width: 1, scale: "°C", points: { show: false } },
          { label: labels.thi, stroke: "#c0392b", dash: [6, 4], width: 1, scale: "°C", points: { show: false } },
          { label: labels.hlo, stroke: "#2471a3", dash: [6, 4], width: 1, scale: "h", points: { show: false } },
          { label: labels.hhi, stroke: "#2471a3", dash: [6, 4], width: 1, scale: "h", points: { show: false } }
        ],
        axes: [{ space: 90, values: function (u, splits) {
          return splits.map(function (ts) { return tick(local(ts)); });
        } }, { scale: "°C", label: "°C" }, { scale: "h", side: 1, label: "%RH", grid: { show: false } }],
        hooks: {
          drawClear: [function (u) {
            var ctx = u.ctx;
            ctx.save();
            ctx.fillStyle = "rgba(231, 76, 60, 0.12)";
            data.excursions.forEach(function (e) {
              var x0 = u.valToPos(Date.parse(e.start) / 1000, "x", true);
              var end = e.end ? Date.parse(e.end) / 1000 : xs[xs.length - 1];
              var x1 = u.valToPos(end, "x", true);
              ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
            });
            ctx.restore();
          }]
        }
      };
      holder.textContent = "";
      new uPlot(opts, [xs, tMean, tMin, tMax, hMean,
        flat(lim.temperature_c[0]), flat(lim.temperature_c[1]),
        flat(lim.humidity_pct[0]), flat(lim.humidity_pct[1])], holder);
      holder.dataset.drawn = String(xs.length);
    })
    .catch(function () { holder.textContent = holder.dataset.failed; });
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-chart=climate]").forEach(drawClimate);
});
