// The report panel beside the images: the study's reports, and for a
// radiologist the claim, template, a draft saved as it is typed, the
// critical-result flag, preliminary, finalise and addendum.
import { api, el, enc, $, status, session, SignedOut } from "./app.js";

const AUTOSAVE_MS = 1200;
let current = null;

export function closeReport() {
  if (current?.timer) {
    clearTimeout(current.timer);
    current.save();
  }
  current = null;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

function fail(e) {
  if (!(e instanceof SignedOut)) status(e.message);
}

export async function openReport(study) {
  closeReport();
  const panel = $("#report");
  const me = { study, timer: 0, save: async () => {} };
  current = me;
  // The study as it is now: its reports (those this user may read) and its claim.
  const [fresh, templates] = await Promise.all([
    api(`/api/studies/${enc(study.uid)}`),
    session.role === "radiologist" ? api("/api/templates").catch(() => []) : Promise.resolve([]),
  ]).catch((e) => (fail(e), [study, []]));
  if (current !== me) return;
  const reports = fresh.reports || [];
  const claim = fresh.claim;
  const finals = reports.filter((r) => r.status === "final" && !r.addendum_of);
  const mine = reports.find((r) => r.author === session.user && r.status !== "final");
  const others = reports.filter((r) => r !== mine && r.status !== "draft");

  const parts = [el("h3", { textContent: "Report" })];
  if (study.order) parts.push(el("div", { className: "badge", textContent: `${study.order.procedure || ""} · ${study.order.indication || ""}` }));
  for (const r of others.sort((a, b) => a.created_ms - b.created_ms)) {
    parts.push(
      el("div", { className: "report-text", dataset: { id: r.id, status: r.status } }, el("strong", { textContent: `${r.addendum_of ? "ADDENDUM" : r.status.toUpperCase()} · ${r.author} · ${when(r.signed_ms || r.updated_ms)}\n` }), r.text),
    );
  }
  if (session.role === "radiologist") {
    const claimRow = el("div", { className: "row" });
    const held = claim && claim.by !== session.user;
    claimRow.append(el("span", { textContent: claim ? `Claimed by ${claim.by}` : "Not claimed" }));
    const claimBtn = el("button", { textContent: claim?.by === session.user ? "Release" : "Claim", id: "claim", disabled: held });
    claimBtn.onclick = async () => {
      try {
        await api(`/api/studies/${enc(study.uid)}/claim`, { method: claim?.by === session.user ? "DELETE" : "POST" });
        openReport(study);
      } catch (e) {
        fail(e);
      }
    };
    claimRow.append(claimBtn);
    parts.push(claimRow);
    if (mine) parts.push(editor(study, mine, templates, me));
    else if (!held) {
      if (finals.length) {
        const add = el("button", { textContent: "Addendum", id: "addendum" });
        add.onclick = async () => {
          try {
            // A draft is never empty: it starts by saying what it adds to.
            const last = finals[finals.length - 1];
            await api(`/api/reports/${last.id}/addenda`, { method: "POST", body: { text: `Addendum to the report signed ${when(last.signed_ms)}:\n` } });
            openReport(study);
          } catch (e) {
            fail(e);
          }
        };
        parts.push(add);
      } else {
        const start = el("button", { textContent: "Start report", id: "start-report" });
        start.onclick = async () => {
          try {
            await api(`/api/studies/${enc(study.uid)}/reports`, { method: "POST", body: {} });
            openReport(study);
          } catch (e) {
            fail(e);
          }
        };
        parts.push(start);
      }
    }
  } else if (!others.length) {
    parts.push(el("p", { textContent: "Not reported yet." }));
  }
  panel.replaceChildren(...parts);
}

/// The author's draft: one box per section, saved a moment after typing
/// stops (and before preliminary, finalise or leaving the study).
function editor(study, report, templates, me) {
  const box = el("form", { id: "draft" });
  let sections = report.sections?.length ? report.sections.map((s) => ({ ...s })) : [{ name: "Report", text: report.text || "" }];
  const saved = el("span", { className: "saved", textContent: `Draft v${report.version}` });
  let dirty = false;
  me.save = async () => {
    if (!dirty) return;
    clearTimeout(me.timer);
    me.timer = 0;
    dirty = false;
    try {
      const r = await api(`/api/reports/${report.id}`, { method: "PUT", body: { sections } });
      saved.textContent = `Saved v${r.version} at ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      dirty = true;
      saved.textContent = `Not saved: ${e.message}`;
    }
  };
  const fields = el("div");
  const draw = () =>
    fields.replaceChildren(
      ...sections.map((s, k) => {
        const t = el("textarea", { name: s.name, value: s.text });
        t.oninput = () => {
          sections[k].text = t.value;
          dirty = true;
          saved.textContent = "Editing…";
          clearTimeout(me.timer);
          me.timer = setTimeout(me.save, AUTOSAVE_MS);
        };
        return el("label", {}, s.name, t);
      }),
    );
  draw();
  const tpl = el("select", { name: "template", title: "Template" }, el("option", { value: "", textContent: "Template…" }));
  for (const t of templates) tpl.append(el("option", { value: t.id, textContent: t.name, selected: t.id === report.template }));
  tpl.onchange = () => {
    const t = templates.find((x) => x.id === tpl.value);
    if (!t) return;
    const typed = sections.some((s) => s.text.trim());
    if (typed && !confirm("Replace the draft's sections with this template?")) return;
    sections = t.sections.map((s) => ({ ...s }));
    dirty = true;
    draw();
    me.save();
  };
  const flag = el("select", { name: "flag", title: "Flag a finding (RCR)" }, el("option", { value: "", textContent: "Flag finding…" }));
  for (const c of ["critical", "urgent", "unexpected"]) flag.append(el("option", { value: c, textContent: c }));
  flag.onchange = async () => {
    if (!flag.value) return;
    try {
      await api(`/api/reports/${report.id}/flag`, { method: "POST", body: { category: flag.value } });
      status(`Flagged ${flag.value}: to be communicated to the referrer`);
    } catch (e) {
      fail(e);
    }
  };
  const action = (label, id, path) => {
    const b = el("button", { type: "button", textContent: label, id });
    b.onclick = async () => {
      try {
        await me.save();
        await api(`/api/reports/${report.id}/${path}`, { method: "POST" });
        status(`${label}: done`);
        openReport(study);
      } catch (e) {
        fail(e);
      }
    };
    return b;
  };
  box.onsubmit = (e) => e.preventDefault();
  box.append(
    el("div", { className: "row" }, tpl, flag),
    fields,
    el("div", { className: "row" }, action("Preliminary", "preliminary", "preliminary"), action("Finalise", "finalise", "sign"), saved),
  );
  if (report.addendum_of) box.prepend(el("strong", { textContent: "Addendum" }));
  return box;
}
