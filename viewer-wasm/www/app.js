// radhub's viewer: the screens (sign-in, worklist, patient record, image
// viewer) and the launch URLs an EPR links to. Everything it shows comes
// from radhub's HTTP API; the session is an HttpOnly cookie this script
// never sees.
import init from "./pkg/viewer_wasm.js";
import { openStudy, closeViewer, ready } from "./viewer.js";

// Script errors, kept for the browser tests to report.
window.radhubErrors = [];
window.addEventListener("error", (e) => window.radhubErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.radhubErrors.push(String(e.reason?.stack || e.reason)));

export const $ = (s, root = document) => root.querySelector(s);
export const el = (tag, { dataset, ...props } = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  Object.assign(e.dataset, dataset || {});
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
};
export const enc = encodeURIComponent;
export const personName = (pn) => (pn || "").split("^").filter(Boolean).join(" ").trim() || "(no name)";
export const dicomDate = (d) => (d && d.length === 8 ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : d || "");

export const session = { user: null, role: null };

export class SignedOut extends Error {}

/// JSON from the API; a 401 brings up sign-in and keeps the URL, so that
/// signing in goes straight on to where the link pointed.
export async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  let body = options.body;
  if (body !== undefined && typeof body !== "string") {
    body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const r = await (early(path, options) || fetch(path, { credentials: "same-origin", ...options, headers, body }));
  if (!r.ok) {
    const e = await refusal(r);
    if (e instanceof SignedOut) showSignIn();
    throw e;
  }
  return r.status === 204 ? null : r.json();
}

/// The error a refused answer carries: its problem+json detail, or
/// SignedOut for a 401.
export async function refusal(r) {
  if (r.status === 401) return new SignedOut("signed out");
  const p = await r.json().catch(() => ({}));
  return new Error(p.detail || p.title || `${r.status} ${r.statusText}`);
}

/// The page's early request for `path` (index.html), once, if it made one.
function early(path, options) {
  const e = window.radhubEarly;
  if (!e || (options.method && options.method !== "GET")) return null;
  if (path === "/api/session" && e.session) {
    const r = e.session;
    e.session = null;
    return r;
  }
  if (e.study && path === `/api/studies/${enc(e.study.uid)}`) {
    const r = e.study.answer;
    e.study = null;
    return r;
  }
  return null;
}

export function status(text) {
  $("#status").textContent = text;
}

function show(id) {
  for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== id;
  if (id !== "viewer") closeViewer();
}

function showSignIn() {
  session.user = null;
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#who").textContent = "";
  show("signin");
  $("#signin [name=username]").focus();
}

function signedIn(me) {
  session.user = me.user;
  session.role = me.role;
  $("#who").textContent = `${me.user} (${me.role})`;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
}

export function go(url) {
  history.pushState(null, "", url);
  route();
}

/// The launch URLs: ?nhs= opens the patient; ?study= and
/// ?accession=&issuer= open a study; otherwise the worklist.
async function route() {
  const q = new URLSearchParams(location.search);
  try {
    if (!session.user) signedIn(await api("/api/session"));
    if (q.has("study")) {
      show("viewer");
      await openStudy(q.get("study"));
    } else if (q.has("accession")) {
      await byAccession(q.get("accession"), q.get("issuer") || "");
    } else if (q.has("nhs")) {
      show("patient");
      await patientRecord(q.get("nhs"));
    } else if (q.has("find")) {
      show("patients");
      await findPatients(q.get("find"));
    } else {
      show("worklist");
      await worklist(q);
    }
  } catch (e) {
    if (!(e instanceof SignedOut)) status(e.message);
  }
}

async function byAccession(accession, issuer) {
  const found = await api(`/api/reports?accession=${enc(accession)}&issuer=${enc(issuer)}`);
  if (found.length === 0) throw new Error(`no study with accession ${accession} at ${issuer}`);
  // The study itself, so that the URL says what is open.
  history.replaceState(null, "", `/viewer/?study=${enc(found[0].study)}`);
  show("viewer");
  await openStudy(found[0].study);
}

// ---- worklist ----------------------------------------------------------

const FILTERS = [
  ["site", "Site"],
  ["modality", "Modality"],
  ["body_part", "Body part"],
  ["priority", "Priority"],
  ["claimed_by", "Claimed by"],
  ["assigned_to", "Assigned to"],
];
const PRIORITY = { S: "Stat", A: "ASAP", T: "Timing", P: "Pre-op", R: "Routine" };
let worklistTimer = 0;

function waited(s) {
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

async function worklist(q) {
  clearTimeout(worklistTimer);
  const params = new URLSearchParams();
  for (const [k] of FILTERS) if (q.get(k) !== null) params.set(k, q.get(k));
  for (const k of ["older_than", "newer_than"]) if (q.get(k)) params.set(k, q.get(k));
  const page = await api(`/api/worklist?${params}&limit=200`);
  const form = $("#filters");
  form.replaceChildren(
    ...FILTERS.map(([k, label]) => {
      const sel = el("select", { name: k }, el("option", { value: "*", textContent: "any" }));
      const counts = page.counts[k] || {};
      for (const [v, n] of Object.entries(counts)) {
        const text = `${v === "" ? "no one" : k === "priority" ? PRIORITY[v] || v : v} (${n})`;
        sel.append(el("option", { value: v, textContent: text }));
      }
      sel.value = q.get(k) ?? "*";
      if (sel.value === "" && !("" in counts)) sel.append(el("option", { value: "", textContent: "no one (0)", selected: true }));
      sel.onchange = () => {
        const next = new URLSearchParams(location.search);
        next.delete("worklist");
        if (sel.value === "*") next.delete(k);
        else next.set(k, sel.value);
        go(`/viewer/?worklist&${next}`);
      };
      return el("label", {}, label, sel);
    }),
    el("label", {}, "Waiting over", (() => {
      const s = el("select", { name: "older_than" });
      for (const [v, t] of [["", "any"], ["30m", "30 min"], ["1h", "1 h"], ["4h", "4 h"], ["1d", "1 day"]]) s.append(el("option", { value: v, textContent: t }));
      s.value = q.get("older_than") || "";
      s.onchange = () => {
        const next = new URLSearchParams(location.search);
        if (s.value) next.set("older_than", s.value);
        else next.delete("older_than");
        go(`/viewer/?${next}`);
      };
      return s;
    })()),
  );
  $("#wl-summary").textContent = `${page.total} studies to report`;
  const body = $("#worklist tbody");
  body.replaceChildren(
    ...page.items.map((it) => {
      const row = el("tr", { className: it.priority === "S" ? "stat" : ["A", "T"].includes(it.priority) ? "urgent" : "" });
      row.dataset.uid = it.uid;
      const claim = el("button", { textContent: it.claimed_by === session.user ? "Release" : "Claim", className: "claim" });
      claim.disabled = session.role !== "radiologist" || (it.claimed_by && it.claimed_by !== session.user);
      claim.onclick = async () => {
        try {
          if (it.claimed_by === session.user) await api(`/api/studies/${enc(it.uid)}/claim`, { method: "DELETE" });
          else await api(`/api/studies/${enc(it.uid)}/claim`, { method: "POST" });
          await worklist(new URLSearchParams(location.search));
        } catch (e) {
          if (!(e instanceof SignedOut)) status(e.message);
        }
      };
      const open = el("button", { textContent: "Open", className: "open" });
      open.onclick = () => go(`/viewer/?study=${enc(it.uid)}`);
      row.append(
        el("td", { textContent: PRIORITY[it.priority] || it.priority }),
        el("td", { textContent: waited(it.waiting_s) }),
        el("td", { textContent: it.site }),
        el("td", { textContent: `${personName(it.patient.name)} (${it.patient.patient_id})` }),
        el("td", { textContent: it.modalities.join(", ") }),
        el("td", { textContent: it.procedure || it.description || "" }, it.indication ? el("div", { className: "badge", textContent: it.indication }) : null),
        el("td", { textContent: it.report || "" }),
        el("td", { textContent: it.claimed_by || (it.assigned_to ? `assigned ${it.assigned_to}` : "") }),
        el("td", {}, claim, " ", open),
      );
      row.ondblclick = () => open.onclick();
      return row;
    }),
  );
  status(`Worklist at ${new Date().toLocaleTimeString()}`);
  // The list moves as studies arrive and are reported elsewhere.
  worklistTimer = setTimeout(() => !$("#worklist").hidden && worklist(new URLSearchParams(location.search)).catch(() => {}), 30000);
}

// ---- patients ----------------------------------------------------------

async function findPatients(text) {
  const digits = text.replace(/\s/g, "");
  if (/^\d{10}$/.test(digits)) return go(`/viewer/?nhs=${digits}`);
  const list = await api(`/api/patients?name=${enc(text.toUpperCase().includes("*") ? text : `${text}*`)}&limit=50`);
  $("#patients tbody").replaceChildren(
    ...list.map((p) => {
      const r = p.records[0];
      const row = el(
        "tr",
        {},
        el("td", { textContent: p.nhs_number || "not linked" }),
        el("td", { textContent: personName(r.name) }),
        el("td", { textContent: dicomDate(r.birth_date) }),
        el("td", { textContent: p.records.map((x) => `${x.issuer} ${x.patient_id}`).join("; ") }),
      );
      row.style.cursor = "pointer";
      row.onclick = () => (p.nhs_number ? go(`/viewer/?nhs=${p.nhs_number}`) : r.studies && findStudiesOf(r));
      return row;
    }),
  );
  status(`${list.length} patients`);
}

async function findStudiesOf(r) {
  const s = await api(`/api/studies?patient_id=${enc(r.patient_id)}&issuer=${enc(r.issuer)}&limit=1`);
  if (s.length) go(`/viewer/?study=${enc(s[0].uid)}`);
}

async function patientRecord(nhs) {
  const p = await api(`/api/patients/${enc(nhs)}`);
  const first = p.records[0] || {};
  $("#pt-head").replaceChildren(
    el("h2", { textContent: `${personName(first.name)}` }),
    el("div", { textContent: `NHS ${p.nhs_number.replace(/(\d{3})(\d{3})(\d{4})/, "$1 $2 $3")} · born ${dicomDate(first.birth_date)} · ${first.sex || ""}` }),
    el("div", { className: "records", textContent: `Records: ${p.records.map((r) => `${r.issuer} ${r.patient_id}`).join(" · ")}` }),
  );
  $("#timeline").replaceChildren(
    ...p.studies.map((s) => {
      const held = s.local ? el("span", { className: "badge", textContent: "held here" }) : el("span", { className: "badge remote", textContent: `at ${s.site}: fetched on opening` });
      const rep = s.reported ? el("span", { className: "badge final", textContent: "reported" }) : el("span", { className: "badge", textContent: "not reported" });
      const li = el(
        "li",
        { className: "study" },
        el(
          "div",
          { className: "meta" },
          el("span", { className: "date", textContent: dicomDate(s.date) }),
          el("span", { className: "badge", textContent: s.site }),
          el("strong", { textContent: s.modalities.join("/") }),
          el("span", { textContent: s.description || "(no description)" }),
          rep,
          held,
          el("a", { href: `/viewer/?study=${enc(s.uid)}`, textContent: "Open", dataset: { nav: "" } }),
        ),
      );
      li.dataset.uid = s.uid;
      const thumbs = el("div", { className: "thumbs" });
      li.append(thumbs);
      // One read of the study for both its series (thumbnails only for what
      // radhub holds: a remote study is fetched when opened, not while
      // browsing the record) and its reports.
      if (s.local || s.reported) {
        api(`/api/studies/${enc(s.uid)}`).then((d) => {
          for (const x of s.local ? d.series_list || [] : []) {
            thumbs.append(el("img", { loading: "lazy", alt: `${x.modality} ${x.description || ""}`, title: `${x.modality} ${x.description || ""} (${x.instances})`, src: `/dicom-web/studies/${enc(s.uid)}/series/${enc(x.uid)}/thumbnail` }));
          }
          for (const r of d.reports || []) {
            if (r.status === "draft") continue;
            li.append(el("div", { className: "report-text", textContent: `${r.status.toUpperCase()} · ${r.author}\n${r.text}` }));
          }
        }).catch(() => {});
      }
      return li;
    }),
  );
  status(`${p.studies.length} studies from ${new Set(p.studies.map((s) => s.site)).size} sites`);
}

// ---- wiring ------------------------------------------------------------

$("#signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = Object.fromEntries(new FormData(e.target));
  try {
    signedIn(await api("/api/session", { method: "POST", body: f }));
    $("#signin-error").textContent = "";
    e.target.reset();
    route();
  } catch (err) {
    $("#signin-error").textContent = err.message;
  }
});

$("#signout").addEventListener("click", async () => {
  await api("/api/session", { method: "DELETE" }).catch(() => {});
  showSignIn();
});

$("#find").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = new FormData(e.target).get("q").trim();
  if (q) go(`/viewer/?find=${enc(q)}`);
});

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (a && !e.ctrlKey && !e.metaKey) {
    e.preventDefault();
    go(a.getAttribute("href"));
  }
});
window.addEventListener("popstate", route);

// The WASM module compiles while the session and the study are asked for.
ready(init({ module_or_path: window.radhubEarly?.wasm }).catch(() => init()));
route();
