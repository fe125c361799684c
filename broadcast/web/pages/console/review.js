// The after-action report's charts, drawn by plotly.js from the report's own figures: the
// confirmation curve, each street's confirmed share, and the committees with the lowest rate.
"use strict";
(function () {
  const source = document.getElementById("review-data");
  if (!source || !window.Plotly) return;
  const data = JSON.parse(source.textContent);
  const curve = data.curve;
  const font = { family: "system-ui, 'WenQuanYi Zen Hei', sans-serif" };
  const axisMinutes = { title: { text: "签发后分钟 Minutes since issue" }, rangemode: "tozero" };
  const config = { displaylogo: false, responsive: true };
  const box = (name) => document.getElementById("chart-" + name);

  if (box("curve")) {
    const line = (name, values, color) => ({ x: curve.minutes, y: values, name: name, type: "scatter", mode: "lines", line: { color: color, width: 2 } });
    window.Plotly.newPlot(box("curve"), [
      line("已发送 Sent", curve.sent, "#1565c0"),
      line("已送达 Delivered", curve.delivered, "#6d4c41"),
      line("已确认 Confirmed", curve.confirmed, "#2e7d32"),
    ], { height: 280, margin: { l: 70, r: 16, t: 8, b: 48 }, xaxis: axisMinutes,
         yaxis: { title: { text: "人数 People" }, rangemode: "tozero" }, legend: { orientation: "h", y: -0.3 }, font: font }, config);
    box("curve").dataset.points = String(curve.minutes.length);
  }
  if (box("streets")) {
    const targeted = Object.fromEntries(data.streets.map((s) => [s.code, s.targeted || 1]));
    const traces = Object.entries(curve.street).map(([code, series]) => ({
      x: curve.minutes, y: series.map((v) => (100 * v) / targeted[code]), name: data.names[code] || code,
      type: "scatter", mode: "lines",
    }));
    window.Plotly.newPlot(box("streets"), traces, { height: 280, margin: { l: 70, r: 16, t: 8, b: 48 }, xaxis: axisMinutes,
      yaxis: { title: { text: "确认率 Confirmed %" }, range: [0, 100] }, legend: { orientation: "h", y: -0.3 }, font: font }, config);
  }
  if (box("lowest") && data.lowest.length) {
    const rows = data.lowest.slice().reverse();
    window.Plotly.newPlot(box("lowest"), [{ type: "bar", orientation: "h", x: rows.map((c) => 100 * c.rate),
      y: rows.map((c) => c.name), marker: { color: "#b71c1c" } }],
      { height: 60 + 26 * rows.length, margin: { l: 180, r: 16, t: 8, b: 40 }, xaxis: { title: { text: "确认率 Confirmed %" }, range: [0, 100] }, font: font }, config);
  }
})();
