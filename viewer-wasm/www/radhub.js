// Signs in with the session cookie (HttpOnly: this script never sees it)
// and lists studies from /api/studies.
"use strict";
const $ = (s) => document.querySelector(s);

async function api(path, options = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...options });
  if (r.status === 401) { show(false); throw new Error("signed out"); }
  if (!r.ok) { const p = await r.json().catch(() => ({})); throw new Error(p.detail || r.statusText); }
  return r.status === 204 ? null : r.json();
}

function show(signedIn) {
  $("#signin").hidden = signedIn;
  $("#studies").hidden = !signedIn;
}

function cell(row, text) { const td = row.insertCell(); td.textContent = text; return td; }

async function list(name) {
  const q = new URLSearchParams({ limit: "100" });
  if (name) q.set("name", name);
  const studies = await api("/api/studies?" + q);
  const body = $("#studies tbody");
  body.replaceChildren();
  for (const s of studies) {
    const row = body.insertRow();
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = "";
    img.src = `/dicom-web/studies/${encodeURIComponent(s.uid)}/thumbnail`;
    row.insertCell().append(img);
    cell(row, s.date);
    cell(row, `${s.patient.name.replaceAll("^", " ")} (${s.patient.patient_id})`);
    cell(row, s.site);
    cell(row, s.modalities.join(", "));
    cell(row, s.description);
    cell(row, s.instances);
    cell(row, s.reported ? "signed" : "awaiting");
  }
}

$("#signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    const me = await api("/api/session", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(Object.fromEntries(f)) });
    $("#who").textContent = `${me.user} (${me.role})`;
    $("#error").textContent = "";
    show(true);
    await list();
  } catch (err) { $("#error").textContent = err.message; }
});

$("#search").addEventListener("submit", (e) => { e.preventDefault(); list(new FormData(e.target).get("name")); });
$("#signout").addEventListener("click", async () => { await api("/api/session", { method: "DELETE" }); $("#who").textContent = ""; show(false); });

api("/api/session").then((me) => { $("#who").textContent = `${me.user} (${me.role})`; show(true); return list(); }).catch(() => show(false));
