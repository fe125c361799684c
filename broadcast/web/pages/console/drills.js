// Two drills of one kind side by side: each street's confirmed share in the earlier and the later drill.
"use strict";
(function () {
  const source = document.getElementById("drills-data");
  if (!source || !window.Plotly) return;
  const data = JSON.parse(source.textContent);
  const rows = data.streets;
  const share = (row, side) => (row[side] ? 100 * row[side].rate : null);
  const bar = (side, id, color) => ({ type: "bar", name: "#" + id, x: rows.map((r) => r.name), y: rows.map((r) => share(r, side)), marker: { color: color } });
  const box = document.getElementById("chart-drills");
  window.Plotly.newPlot(box, [bar("before", data.previous, "#90a4ae"), bar("after", data.latest, "#1565c0")],
    { barmode: "group", height: 300, margin: { l: 60, r: 16, t: 8, b: 80 }, yaxis: { title: { text: "确认率 Confirmed %" }, range: [0, 100] },
      legend: { orientation: "h", y: -0.35 }, font: { family: "system-ui, 'WenQuanYi Zen Hei', sans-serif" } },
    { displaylogo: false, responsive: true });
  box.dataset.bars = String(rows.length);
})();
