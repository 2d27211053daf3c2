//! `--html FILE`: one self-contained page (inline SVG drawn by inline JS,
//! no external assets) with throughput and latency over time and the
//! latency distribution. The data is the JSON report, embedded.
use crate::report::Report;

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sluice-loadgen: __TITLE__</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse}td,th{padding:3px 10px;text-align:right;border-bottom:1px solid #ddd}
th:first-child,td:first-child{text-align:left}
svg{background:#fafafa;border:1px solid #ddd}.axis{stroke:#888}.grid{stroke:#e4e4e4}
text{font-size:11px;fill:#444}.legend{font-size:12px}
</style></head><body>
<h1>sluice-loadgen: __TITLE__</h1>
<p id="summary"></p>
<table id="results"></table>
<h2>Throughput over time (MB/s)</h2><div id="tput"></div>
<h2>Latency over time (µs, p99 per second)</h2><div id="lat"></div>
<h2>Latency distribution (µs by percentile)</h2><div id="dist"></div>
<script>
const R = __DATA__;
const NS = "http://www.w3.org/2000/svg";
function el(tag, attrs, parent, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
// series: [{name, color, pts:[[x,y]...]}]; xs: {log, ticks, fmt}
function chart(id, series, opt) {
  const W = 1000, H = 320, L = 70, B = 40, T = 20, Rm = 170;
  const svg = el("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`});
  document.getElementById(id).appendChild(svg);
  const all = series.flatMap(s => s.pts);
  if (all.length === 0) { el("text", {x: 20, y: 40}, svg, "no data"); return; }
  const fx = opt.fx || (x => x), fy = opt.logY ? (y => Math.log10(Math.max(y, 1))) : (y => y);
  const xs = all.map(p => fx(p[0])), ys = all.map(p => fy(p[1]));
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || 1;
  const y0 = opt.logY ? Math.floor(Math.min(...ys)) : 0;
  const y1 = (opt.logY ? Math.ceil(Math.max(...ys) + 0.01) : Math.max(...ys) * 1.1) || 1;
  const px = x => L + (fx(x) - x0) / ((x1 - x0) || 1) * (W - L - Rm);
  const py = y => H - B - (fy(y) - y0) / ((y1 - y0) || 1) * (H - B - T);
  const yt = [];
  if (opt.logY) { for (let e = y0; e <= y1; e++) yt.push(Math.pow(10, e)); }
  else { for (let i = 0; i <= 5; i++) yt.push(y1 * i / 5); }
  for (const v of yt) {
    el("line", {x1: L, x2: W - Rm, y1: py(v), y2: py(v), class: "grid"}, svg);
    el("text", {x: L - 6, y: py(v) + 4, "text-anchor": "end"}, svg, v >= 100 ? Math.round(v).toLocaleString() : v.toFixed(1));
  }
  for (const [v, label] of opt.xticks(x0, x1)) {
    el("line", {x1: px(v), x2: px(v), y1: T, y2: H - B, class: "grid"}, svg);
    el("text", {x: px(v), y: H - B + 16, "text-anchor": "middle"}, svg, label);
  }
  el("line", {x1: L, x2: W - Rm, y1: H - B, y2: H - B, class: "axis"}, svg);
  el("line", {x1: L, x2: L, y1: T, y2: H - B, class: "axis"}, svg);
  el("text", {x: (L + W - Rm) / 2, y: H - 6, "text-anchor": "middle"}, svg, opt.xlabel);
  series.forEach((s, i) => {
    if (s.pts.length === 0) return;
    const d = s.pts.map((p, j) => (j ? "L" : "M") + px(p[0]).toFixed(1) + "," + py(p[1]).toFixed(1)).join("");
    el("path", {d, fill: "none", stroke: s.color, "stroke-width": 2}, svg);
    el("rect", {x: W - Rm + 12, y: T + i * 18, width: 12, height: 3, fill: s.color}, svg);
    el("text", {x: W - Rm + 30, y: T + i * 18 + 5, class: "legend"}, svg, s.name);
  });
}
const S = R.series;
const timeTicks = (a, b) => { const st = Math.max(1, Math.ceil((b - a) / 10)); const t = []; for (let v = Math.ceil(a); v <= b; v += st) t.push([v, v + "s"]); return t; };
chart("tput", [
  {name: "produce MB/s", color: "#1f77b4", pts: S.map(p => [p.t_s, p.produce_mb_per_s])},
  {name: "consume MB/s", color: "#ff7f0e", pts: S.map(p => [p.t_s, p.consume_mb_per_s])},
], {xticks: timeTicks, xlabel: "seconds since start (warm-up, measure, drain)"});
chart("lat", [
  {name: "publish p99", color: "#1f77b4", pts: S.filter(p => p.publish_p99_us > 0).map(p => [p.t_s, p.publish_p99_us])},
  {name: "end-to-end p99", color: "#ff7f0e", pts: S.filter(p => p.e2e_p99_us > 0).map(p => [p.t_s, p.e2e_p99_us])},
  {name: "end-to-end max", color: "#d62728", pts: S.filter(p => p.e2e_max_us > 0).map(p => [p.t_s, p.e2e_max_us])},
], {logY: true, xticks: timeTicks, xlabel: "seconds since start"});
const nines = q => -Math.log10(Math.max(1 - q, 1e-6));
const D = R.distribution;
chart("dist", [
  {name: "publish", color: "#1f77b4", pts: D.filter(p => p.publish_us > 0).map(p => [p.quantile, p.publish_us])},
  {name: "end-to-end", color: "#ff7f0e", pts: D.filter(p => p.e2e_us > 0).map(p => [p.quantile, p.e2e_us])},
], {fx: nines, logY: true, xlabel: "percentile",
    xticks: () => [[0, "0%"], [0.9, "90%"], [0.99, "99%"], [0.999, "99.9%"], [0.9999, "99.99%"], [0.99999, "99.999%"]]});
const w = R.workload;
document.getElementById("summary").textContent =
  `${w.topics} topic(s) × ${w.partitions_per_topic} partitions, ${w.message_size} B messages, ${w.producers} producers, ` +
  (w.subscriptions > 0 ? `${w.subscriptions} subscription(s) × ${w.consumers} consumers` : `${w.consumers} consumers`) +
  `, ${R.mode === "max-rate" ? "max-rate" : w.producer_rate + " msgs/s"}, acks=${w.acks}, ` +
  `compression=${w.compression}, broker: ${R.broker}, measured ${R.measured_s.toFixed(1)} s, errors ${R.errors}`;
const t = document.getElementById("results");
const row = (cells, th) => { const tr = document.createElement("tr"); for (const c of cells) { const e = document.createElement(th ? "th" : "td"); e.textContent = c; tr.appendChild(e); } t.appendChild(tr); };
row(["", "msgs/s", "MB/s", "p50 µs", "p75", "p95", "p99", "p99.9", "p99.99", "max"], true);
const P = (x, l) => [x.msgs_per_s.toLocaleString(), x.mb_per_s.toFixed(2), l.p50, l.p75, l.p95, l.p99, l.p99_9, l.p99_99, l.max];
row(["produce / publish latency", ...P(R.produce, R.publish_latency_us)]);
row([(w.subscriptions > 0 ? "consume (all subscriptions)" : "consume") + " / end-to-end latency",
     ...P(R.consume, R.end_to_end_latency_us)]);
</script></body></html>
"##;

/// The page for `report`.
pub fn render(report: &Report) -> String {
    // `</` inside a script would end it; JSON strings may hold error text.
    let data = report.to_json().replace("</", "<\\/");
    let title = report
        .workload
        .name
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    PAGE.replace("__TITLE__", &title).replacen("__DATA__", &data, 1)
}
