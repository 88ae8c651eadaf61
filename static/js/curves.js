// Live training curves: a line chart for <canvas data-curves="ID">, where ID names a
// json_script element holding {"train_loss": [[step, value], ...], "val_loss": [...]}.
//
// Measured points are joined by straight segments (no spline: a curve that overshoots
// between points draws losses that were never measured). Train loss jumps from batch to
// batch, so it can be smoothed with an exponential moving average, debiased as in
// TensorBoard, drawn over the raw points, which stay faint behind it. The slider
// <input data-smoothing-for="CANVAS_ID"> sets the weight (0 = raw only).
//
// The chart is drawn once data exist; when htmx swaps in a fresh fragment (with a fresh
// json_script element of the same id) its data are replaced in place, without a flash.
// Until the first point the card shows a sentence instead of an empty box (.is-empty).
(function () {
  "use strict";
  var TRAIN = { key: "train_loss", label: "train loss", color: "#3b5bdb", faint: "rgba(59, 91, 219, 0.25)" };
  var VAL = { key: "val_loss", label: "validation loss", color: "#e8590c" };
  var charts = {};

  function points(data, key) {
    return (data[key] || []).map(function (p) { return { x: p[0], y: p[1] }; });
  }

  // TensorBoard's smoothing: an EMA debiased for its zero start, so early points are not
  // pulled towards zero.
  function smooth(raw, weight) {
    var last = 0;
    var n = 0;
    return raw.map(function (p) {
      n += 1;
      last = last * weight + (1 - weight) * p.y;
      var debias = weight === 0 ? 1 : 1 - Math.pow(weight, n);
      return { x: p.x, y: last / debias };
    });
  }

  function smoothingOf(canvas) {
    var input = document.querySelector('input[data-smoothing-for="' + canvas.id + '"]');
    var value = input ? parseFloat(input.value) : 0;
    return isFinite(value) ? Math.min(Math.max(value, 0), 0.99) : 0;
  }

  function datasets(data, weight) {
    var train = points(data, TRAIN.key);
    var smoothed = weight > 0 ? smooth(train, weight) : [];
    return [
      // The measured train loss: faint behind the smoothed line, solid when not smoothing.
      { label: weight > 0 ? "train loss (measured)" : TRAIN.label, data: train,
        borderColor: weight > 0 ? TRAIN.faint : TRAIN.color,
        backgroundColor: weight > 0 ? TRAIN.faint : TRAIN.color,
        pointRadius: weight > 0 ? 1.5 : 2, borderWidth: weight > 0 ? 1 : 2, tension: 0 },
      { label: "train loss (smoothed " + weight.toFixed(2) + ")", data: smoothed,
        borderColor: TRAIN.color, backgroundColor: TRAIN.color, pointRadius: 0,
        borderWidth: 2, tension: 0 },
      { label: VAL.label, data: points(data, VAL.key), borderColor: VAL.color,
        backgroundColor: VAL.color, pointRadius: 3, borderWidth: 2, tension: 0 },
    ];
  }

  function update(canvas) {
    var source = document.getElementById(canvas.dataset.curves);
    if (!source) return;
    var data = JSON.parse(source.textContent);
    var count = (data[TRAIN.key] || []).length + (data[VAL.key] || []).length;
    var card = canvas.closest(".chart-card");
    if (card) card.classList.toggle("is-empty", count === 0);
    if (count === 0 || typeof Chart === "undefined") return;
    var weight = smoothingOf(canvas);
    var chart = charts[canvas.id];
    if (!chart) {
      charts[canvas.id] = new Chart(canvas, {
        type: "line",
        data: { datasets: datasets(data, weight) },
        options: {
          animation: false,
          parsing: false,
          // The box's CSS height (.curves-box) decides, so a phone gets a readable chart.
          maintainAspectRatio: false,
          // A curve with no points (no smoothing, no validation yet) has no legend entry.
          plugins: { legend: { labels: { filter: function (item, chartData) {
            return chartData.datasets[item.datasetIndex].data.length > 0; } } } },
          scales: { x: { type: "linear", title: { display: true, text: "optimizer step" } },
                    y: { title: { display: true,
                                  text: canvas.dataset.yLabel || "loss (target tokens)" } } },
        },
      });
      return;
    }
    var fresh = datasets(data, weight);
    chart.data.datasets.forEach(function (set, i) {
      Object.assign(set, fresh[i]);
    });
    chart.update("none");
  }

  function all() {
    document.querySelectorAll("canvas[data-curves]").forEach(update);
    // The log tail shows its newest line, also after each live refresh.
    document.querySelectorAll("pre.log").forEach(function (pre) { pre.scrollTop = pre.scrollHeight; });
  }

  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.dataset.smoothingFor) return;
    var output = document.getElementById(input.id + "-value");
    if (output) output.textContent = parseFloat(input.value).toFixed(2);
    var canvas = document.getElementById(input.dataset.smoothingFor);
    if (canvas) update(canvas);
  });
  document.addEventListener("DOMContentLoaded", all);
  document.addEventListener("htmx:afterSettle", all);
})();
