// The page: pick a CSV (or a bundled example), POST it to /v1/forecast, draw the chart and the table.
"use strict";

const $ = (id) => document.getElementById(id);

function setStatus(text, state) {
  const status = $("status");
  status.textContent = text;
  status.dataset.state = state;
}

function fmt(x) {
  const a = Math.abs(x);
  const digits = a >= 1e6 ? 0 : a >= 100 ? 2 : 4;
  return x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: Math.min(digits, 2) });
}

async function loadMeta() {
  try {
    const [model, examples] = await Promise.all([fetch("/v1/model"), fetch("/v1/examples")]);
    const info = await model.json();
    $("model").textContent = `${info.model} (context ${info.max_context} bars, ${info.device}; at most ` +
      `${info.limits.max_pred_len} bars and ${info.limits.max_samples} paths)`;
    $("pred_len").max = info.limits.max_pred_len;
    $("samples").max = info.limits.max_samples;
    for (const example of await examples.json()) {
      const option = document.createElement("option");
      option.value = example.url;
      option.textContent = example.name;
      $("example").append(option);
    }
  } catch (err) {
    setStatus(`could not reach the service: ${err}`, "error");
  }
}

async function chosenFile() {
  const file = $("file").files[0];
  if (file) return file;
  const url = $("example").value;
  if (!url) return null;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`example ${url}: HTTP ${response.status}`);
  return new File([await response.blob()], url.split("/").pop(), { type: "text/csv" });
}

function fillTable(result) {
  const q = result.quantiles;
  const rows = result.timestamps.map((t, i) => {
    const band = (lo, hi) => (q[lo] && q[hi] ? `${fmt(q[lo].close[i])} – ${fmt(q[hi].close[i])}` : "–");
    const median = q["0.5"] ? q["0.5"] : null;
    const cells = [t.replace("T00:00:00", "").replace("T", " "),
      median ? fmt(median.close[i]) : "–", band("0.25", "0.75"), band("0.1", "0.9"),
      fmt(result.mean.close[i]), median ? fmt(median.volume[i]) : "–"];
    if (result.realised) {
      const known = i < result.realised.close.length;
      const hit = (level) => (known ? (result.hits[level].close[i] ? "yes" : "no") : "–");
      cells.push(known ? fmt(result.realised.close[i]) : "–", known ? fmt(result.crps.close[i]) : "–",
        hit("50"), hit("80"));
    }
    return `<tr>${cells.map((c) => `<td>${c}</td>`).join("")}</tr>`;
  });
  $("table").tBodies[0].innerHTML = rows.join("");
  for (const th of $("table").querySelectorAll("th.holdout")) th.hidden = !result.realised;
  $("table").hidden = false;
}

// A file of many series: the server lists their symbols; the Symbol menu offers them for the next try.
function offerSymbols(symbols) {
  const menu = $("symbol");
  menu.replaceChildren(...symbols.map((name) => {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    return option;
  }));
  $("symbol_label").hidden = false;
}

function forgetSymbols() {
  $("symbol").replaceChildren();
  $("symbol_label").hidden = true;
}

async function run(event) {
  event.preventDefault();
  const button = $("run");
  try {
    const file = await chosenFile();
    if (!file) {
      setStatus("choose a CSV file or an example first", "error");
      return;
    }
    button.disabled = true;
    setStatus(`forecasting ${$("pred_len").value} bars of ${file.name}…`, "busy");
    const form = new FormData();
    form.append("file", file);
    form.append("pred_len", $("pred_len").value);
    form.append("samples", $("samples").value);
    form.append("seed", $("seed").value.trim() || "0");
    form.append("history_bars", $("history_bars").value);
    form.append("quantiles", "0.1,0.25,0.5,0.75,0.9");
    form.append("chart", "true");
    if ($("cutoff").value.trim()) {
      form.append("cutoff", $("cutoff").value.trim());
    }
    for (const field of ["time_column", "date_format", "calendar"]) {
      if ($(field).value.trim()) form.append(field, $(field).value.trim());
    }
    if ($("dayfirst").value) form.append("dayfirst", $("dayfirst").value);
    if (!$("symbol_label").hidden && $("symbol").value) form.append("symbol", $("symbol").value);
    // The X-Kronos-Client header marks the upload as this page's own: the server refuses multipart
    // posts without it, which other sites' pages cannot add.
    const response = await fetch("/v1/forecast", { method: "POST", body: form,
      headers: { "X-Kronos-Client": "page" } });
    const result = await response.json();
    if (!response.ok) {
      const symbols = (result.errors || []).find((e) => e.type === "symbol");
      if (symbols) offerSymbols(symbols.symbols);
      setStatus(`error ${response.status}: ${result.detail}`, "error");
      return;
    }
    const title = Object.assign({}, result.chart.layout.title, { text: `${file.name}: ${result.timestamps.length}` +
      ` bars after ${result.history_end.replace("T00:00:00", "")} (${result.samples} paths, ${result.freq})` +
      (result.realised ? ", realised bars drawn over the forecast" : "") });
    const layout = Object.assign({}, result.chart.layout, { title });
    await Plotly.newPlot("chart", result.chart.data, layout, { responsive: true, displaylogo: false });
    fillTable(result);
    const h = result.holdout;
    const versus = h ? `; against the ${h.bars} realised bars: close CRPS ${fmt(h.crps_close)} ` +
      `(${(100 * h.crps_close_rel).toFixed(2)}% of the last close), inside the 50% band ` +
      `${Math.round(100 * h.coverage_50)}%, the 80% band ${Math.round(100 * h.coverage_80)}%` : "";
    const calibrated = result.calibration ? `; ${result.calibration.summary}` : "";
    setStatus(`done in ${(result.elapsed_ms / 1000).toFixed(2)} s: ${result.history_rows} history bars, ` +
      `model ${result.model}, seed ${$("seed").value.trim() || "0"}${calibrated}${versus}`, "done");
  } catch (err) {
    setStatus(`error: ${err.message || err}`, "error");
  } finally {
    button.disabled = false;
  }
}

$("file").addEventListener("change", () => { forgetSymbols(); if ($("file").files.length) $("example").value = ""; });
$("example").addEventListener("change", () => { forgetSymbols(); if ($("example").value) $("file").value = ""; });
$("form").addEventListener("submit", run);
loadMeta();
