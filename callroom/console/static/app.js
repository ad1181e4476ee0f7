// The callroom console: one page, Preact components written with htm (no build step). Everything it
// shows comes from the node's own /v2 API with the signed-in key, and is refreshed when the node pushes
// one of the account's events (/console/events). Every name, label and client state is rendered as text.
import { h, render } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";

const html = htm.bind(h);
const KEY = "callroom.console.key";

// -- the node's API ----------------------------------------------------------------------------------

let apiKey = sessionStorage.getItem(KEY) || "";

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${apiKey}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (response.status === 204) return null;
  const text = await response.text();
  const parsed = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = parsed && parsed.errors && parsed.errors[0];
    throw new Error(error ? `${error.title}: ${error.detail || ""}` : `HTTP ${response.status}`);
  }
  return parsed;
}

const enc = encodeURIComponent;

// -- the state, and what a pushed event makes stale ----------------------------------------------------

const state = {
  live: false,
  conferences: [],
  participants: {}, // conference id -> participants
  queues: [],
  queueCalls: {}, // queue name -> waiting callers
  calls: [],
  floors: {}, // conference id -> call_control_id talking
  figures: [],
  deliveries: [],
  recordings: [],
  applications: [],
  events: [], // the last events pushed, newest first
  waiters: [], // [predicate, resolve] for the playground
};
const listeners = new Set();
function changed() { for (const f of listeners) f(); }

function useStore() {
  const [, setTick] = useState(0);
  useEffect(() => {
    const f = () => setTick((n) => n + 1);
    listeners.add(f);
    return () => listeners.delete(f);
  }, []);
  return state;
}

const loaders = {
  async conferences() {
    const list = await api("GET", "/v2/conferences?page[size]=100");
    state.conferences = list.data.filter((c) => c.status !== "completed");
    const parts = {};
    await Promise.all(state.conferences.map(async (c) => {
      parts[c.id] = (await api("GET", `/v2/conferences/${enc(c.id)}/participants?page[size]=250`)).data;
    }));
    state.participants = parts;
  },
  async queues() {
    state.queues = (await api("GET", "/v2/queues?page[size]=100")).data;
    const calls = {};
    await Promise.all(state.queues.map(async (q) => {
      calls[q.name] = (await api("GET", `/v2/queues/${enc(q.name)}/calls?page[size]=250`)).data;
    }));
    state.queueCalls = calls;
  },
  async calls() { state.calls = (await api("GET", "/console/calls")).data; },
  async deliveries() {
    const failed = (await api("GET", "/v2/webhook_deliveries?filter[status][eq]=failed&page[size]=50")).data;
    const all = (await api("GET", "/v2/webhook_deliveries?page[size]=50")).data;
    state.deliveries = [...failed, ...all.filter((d) => d.status !== "failed")];
  },
  async recordings() { state.recordings = (await api("GET", "/v2/recordings?page[size]=100")).data; },
  async applications() { state.applications = (await api("GET", "/v2/call_control_applications?page[size]=100")).data; },
};

const stale = new Set();
let reloadTimer = null;
function reload(...what) {
  for (const w of what) stale.add(w);
  if (reloadTimer) return;
  reloadTimer = setTimeout(async () => {
    reloadTimer = null;
    const now = [...stale];
    stale.clear();
    await Promise.all(now.map((w) => loaders[w]().catch((e) => console.warn(w, e))));
    changed();
  }, 30);
}

function affected(eventType) {
  const what = ["calls", "deliveries"];
  if (eventType.startsWith("conference.")) what.push("conferences");
  if (eventType.startsWith("call.enqueued") || eventType.includes("queue") || eventType === "call.hangup"
      || eventType === "call.bridged") what.push("queues");
  if (eventType.includes("recording")) what.push("recordings");
  return what;
}

// -- the push channel: server-sent events read from a fetch (the key travels in a header, not a URL) ----

async function listen() {
  for (;;) {
    try {
      const response = await fetch("/console/events", { headers: { Authorization: `Bearer ${apiKey}` } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      state.live = true;
      changed();
      reload("conferences", "queues", "calls", "deliveries", "recordings", "applications");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          dispatch(block);
        }
      }
    } catch (e) {
      console.warn("push channel", e);
    }
    state.live = false;
    changed();
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function dispatch(block) {
  let kind = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) kind = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  const body = JSON.parse(data);
  if (kind === "hello") {
    state.floors = body.floors;
    state.figures = body.figures;
  } else if (kind === "figures") {
    state.figures = [...state.figures.slice(-119), body];
  } else if (kind === "floor") {
    if (body.call_control_id) state.floors[body.conference_id] = body.call_control_id;
    else delete state.floors[body.conference_id];
  } else if (kind === "webhook") {
    state.events = [body, ...state.events.slice(0, 199)];
    state.waiters = state.waiters.filter(([test, resolve]) => (test(body) ? (resolve(body), false) : true));
    reload(...affected(body.event_type));
  } else if (kind === "touched") {
    reload("conferences");
  } else if (kind === "resync") {
    reload("conferences", "queues", "calls", "deliveries", "recordings");
  }
  changed();
}

function waitFor(test, seconds = 20) {
  return new Promise((resolve, reject) => {
    state.waiters.push([test, resolve]);
    setTimeout(() => reject(new Error("timed out")), seconds * 1000);
  });
}

// -- small pieces ----------------------------------------------------------------------------------

function Button({ label, run, danger, name }) {
  const [busy, setBusy] = useState(false);
  const click = async () => {
    setBusy(true);
    try {
      await run();
      reload("conferences", "queues", "calls");
    } catch (e) { alert(e.message); } finally { setBusy(false); }
  };
  return html`<button class=${"act" + (danger ? " danger" : "")} data-action=${name || label}
    disabled=${busy} onClick=${click}>${label}</button>`;
}

function Chart({ name, values, unit }) {
  const last = values.length ? values[values.length - 1] : 0;
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * 100},${38 - (v / max) * 36}`).join(" ");
  return html`<div class="chart" data-figure=${name}>
    <div class="n">${name}</div>
    <div class="v">${typeof last === "number" ? Math.round(last * 100) / 100 : last}${unit ? " " + unit : ""}</div>
    <svg viewBox="0 0 100 40" preserveAspectRatio="none"><polyline points=${points} /></svg>
  </div>`;
}

function seconds(since) {
  return Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
}

function useClock() {
  const [, setNow] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
}

// -- the pages ---------------------------------------------------------------------------------------

function Overview({ s }) {
  const f = s.figures;
  const series = (k) => f.map((x) => x[k] || 0);
  const sip = f.length ? f[f.length - 1].sip_responses : {};
  return html`<div>
    <div class="charts">
      <${Chart} name="active calls" values=${series("calls")} />
      <${Chart} name="legs" values=${series("legs")} />
      <${Chart} name="conferences" values=${series("conferences")} />
      <${Chart} name="queued callers" values=${series("queued")} />
      <${Chart} name="calls per second" values=${series("calls_per_second")} />
      <${Chart} name="tick lateness p99" values=${series("tick_late_p99_ms")} unit="ms" />
      <${Chart} name="webhook backlog" values=${series("webhook_backlog")} />
      <${Chart} name="open consoles" values=${series("consoles")} />
    </div>
    <section class="card"><h2>SIP responses by code</h2>
      ${Object.keys(sip).length === 0 ? html`<span class="muted-text">none yet</span>`
        : Object.entries(sip).map(([code, n]) => html`<span class="badge">${code}: ${n}</span>`)}
    </section>
    <section class="card"><h2>Latest events</h2>
      <table><tbody>${s.events.slice(0, 15).map((e) => html`<tr><td>${e.occurred_at}</td><td>${e.event_type}</td>
        <td>${e.payload.call_control_id || e.payload.conference_id || ""}</td></tr>`)}</tbody></table>
    </section>
  </div>`;
}

function Participant({ conf, p, s }) {
  const talking = s.floors[conf.id] === p.call_control_id;
  const ids = { call_control_ids: [p.call_control_id] };
  const path = `/v2/conferences/${enc(conf.id)}/actions`;
  const role = async (value) => {
    const body = { call_control_id: p.call_control_id, supervisor_role: value };
    if (value === "whisper") {
      body.whisper_call_control_ids = (s.participants[conf.id] || [])
        .filter((o) => o.call_control_id !== p.call_control_id).map((o) => o.call_control_id);
    }
    await api("POST", `${path}/update`, body);
  };
  return html`<tr data-participant=${p.call_control_id}>
    <td>${p.call_control_id}</td>
    <td>${talking ? html`<span class="badge talking" data-state="talking">talking</span>` : ""}
      ${p.muted ? html`<span class="badge muted" data-state="muted">muted</span>` : ""}
      ${p.on_hold ? html`<span class="badge hold" data-state="on_hold">on hold</span>` : ""}
      <span class="badge">${p.status}</span></td>
    <td><select data-action="role" value=${p.supervisor_role || "none"}
      onChange=${(e) => role(e.target.value).then(() => reload("conferences"), (err) => alert(err.message))}>
      ${["none", "barge", "monitor", "whisper"].map((r) => html`<option value=${r}>${r}</option>`)}
    </select></td>
    <td>${(p.whisper_call_control_ids || []).join(", ")}</td>
    <td>
      ${p.muted ? html`<${Button} label="unmute" run=${() => api("POST", `${path}/unmute`, ids)} />`
        : html`<${Button} label="mute" run=${() => api("POST", `${path}/mute`, ids)} />`}
      ${p.on_hold ? html`<${Button} label="unhold" run=${() => api("POST", `${path}/unhold`, ids)} />`
        : html`<${Button} label="hold" run=${() => api("POST", `${path}/hold`, ids)} />`}
      <${Button} label="remove" danger run=${() => api("POST", `${path}/leave`, { call_control_id: p.call_control_id })} />
    </td>
  </tr>`;
}

function Conference({ conf, s }) {
  const [text, setText] = useState("");
  const [audio, setAudio] = useState("");
  const path = `/v2/conferences/${enc(conf.id)}/actions`;
  const parts = s.participants[conf.id] || [];
  return html`<section class="card" data-conference=${conf.id}>
    <h2><span data-name>${conf.name}</span> <span class="badge">${conf.status}</span>
      <span class="muted-text">${parts.length} participant(s)</span></h2>
    <table><thead><tr><th>call</th><th>state</th><th>role</th><th>whispers to</th><th></th></tr></thead>
      <tbody>${parts.map((p) => html`<${Participant} conf=${conf} p=${p} s=${s} key=${p.call_control_id} />`)}</tbody></table>
    <div class="row">
      <input placeholder="text to speak" value=${text} onInput=${(e) => setText(e.target.value)} />
      <${Button} label="speak" run=${() => api("POST", `${path}/speak`, { payload: text || "hello", voice: "female" })} />
      <input placeholder="audio URL or media name" value=${audio} onInput=${(e) => setAudio(e.target.value)} />
      <${Button} label="play" run=${() => api("POST", `${path}/play`,
        audio.includes("://") ? { audio_url: audio } : { media_name: audio })} />
      <${Button} label="stop audio" run=${() => api("POST", `${path}/stop`, {})} />
      <${Button} label="record" run=${() => api("POST", `${path}/record_start`, { format: "mp3" })} />
      <${Button} label="stop recording" run=${() => api("POST", `${path}/record_stop`, {})} />
      <${Button} label="end conference" danger run=${() => api("POST", `${path}/end`, {})} />
    </div>
  </section>`;
}

function Conferences({ s }) {
  if (!s.conferences.length) return html`<p class="muted-text">No conference in progress.</p>`;
  return html`<div>${s.conferences.map((c) => html`<${Conference} conf=${c} s=${s} key=${c.id} />`)}</div>`;
}

function Queue({ q, s }) {
  useClock();
  const [agent, setAgent] = useState("");
  const waiting = s.queueCalls[q.name] || [];
  const agents = s.calls.filter((c) => !c.queue_id && c.state !== "ringing");
  return html`<section class="card" data-queue=${q.name}>
    <h2><span data-name>${q.name}</span> <span class="muted-text" data-size>${waiting.length} / ${q.max_size}</span>
      <span class="muted-text"> average wait ${q.average_wait_time_secs} s</span></h2>
    <table><thead><tr><th>position</th><th>call</th><th>from</th><th>waiting</th><th></th></tr></thead><tbody>
      ${waiting.map((c) => html`<tr data-caller=${c.call_control_id}>
        <td>${c.queue_position}</td><td>${c.call_control_id}</td><td>${c.from}</td>
        <td data-wait>${seconds(c.enqueued_at)} s</td>
        <td><${Button} label="remove" danger run=${() => api("DELETE", `/v2/queues/${enc(q.name)}/calls/${enc(c.call_control_id)}`)} /></td>
      </tr>`)}
    </tbody></table>
    <div class="row">
      <select value=${agent} onChange=${(e) => setAgent(e.target.value)}>
        <option value="">agent's call…</option>
        ${agents.map((c) => html`<option value=${c.call_control_id}>${c.to} (${c.call_control_id.slice(0, 12)})</option>`)}
      </select>
      <${Button} label="take the head caller" run=${() => api("POST", `/v2/calls/${enc(agent)}/actions/bridge`, { queue: q.name })} />
    </div>
  </section>`;
}

function Queues({ s }) {
  if (!s.queues.length) return html`<p class="muted-text">No queue.</p>`;
  return html`<div>${s.queues.map((q) => html`<${Queue} q=${q} s=${s} key=${q.name} />`)}</div>`;
}

function Timeline({ cid }) {
  const [items, setItems] = useState(null);
  const load = async () => {
    const found = await api("GET", `/v2/webhook_deliveries?filter[webhook][contains]=${enc(cid)}&page[size]=250`);
    setItems(found.data.sort((a, b) => Date.parse(a.webhook.occurred_at) - Date.parse(b.webhook.occurred_at)));
  };
  useEffect(() => { load(); }, [cid, state.events.length]);
  if (!items) return html`<p>loading…</p>`;
  return html`<section class="card" data-timeline=${cid}><h2>Timeline of ${cid}</h2>
    <${Button} label="replay its webhooks" run=${() => api("POST", "/v2/webhook_deliveries/replay", { call_control_id: cid })} />
    <table><thead><tr><th>occurred</th><th>event</th><th>status</th><th>attempts</th></tr></thead><tbody>
      ${items.map((d) => html`<tr><td>${d.webhook.occurred_at}</td><td>${d.webhook.event_type}</td>
        <td><span class=${"badge" + (d.status === "failed" ? " failed" : "")}>${d.status}</span></td>
        <td>${d.attempts.map((a) => html`<div>#${a.attempt} ${a.http.request.url} ${a.http.response ? a.http.response.status : ""} ${a.error || ""}</div>`)}</td></tr>`)}
    </tbody></table></section>`;
}

function Calls({ s }) {
  const [open, setOpen] = useState(null);
  const where = (c) => (c.conference_id ? `conference ${c.conference_id.slice(0, 8)}` : c.queue_id ? "queue"
    : c.bridged_with ? `bridged with ${c.bridged_with.slice(0, 12)}` : "");
  return html`<div><section class="card"><h2>Active calls</h2>
    <table><thead><tr><th>call</th><th>state</th><th>direction</th><th>from</th><th>to</th><th>where</th><th>client state</th><th></th></tr></thead><tbody>
      ${s.calls.map((c) => html`<tr data-call=${c.call_control_id}>
        <td><a href="#" onClick=${(e) => { e.preventDefault(); setOpen(c.call_control_id); }}>${c.call_control_id}</a></td>
        <td>${c.state}</td><td>${c.direction}</td><td>${c.from}</td><td>${c.to}</td><td>${where(c)}</td>
        <td>${c.client_state || ""}</td>
        <td><${Button} label="hang up" danger run=${() => api("POST", `/v2/calls/${enc(c.call_control_id)}/actions/hangup`, {})} /></td>
      </tr>`)}
    </tbody></table></section>
    ${open ? html`<${Timeline} cid=${open} />` : ""}
  </div>`;
}

function Recordings({ s }) {
  const [sources, setSources] = useState({});
  const fetchBlob = async (r, fmt) => {
    const response = await fetch(`/v2/recordings/${enc(r.id)}/download.${fmt}`, { headers: { Authorization: `Bearer ${apiKey}` } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return URL.createObjectURL(await response.blob());
  };
  const fmt = (r) => (r.download_urls && r.download_urls.mp3 ? "mp3" : "wav");
  const download = async (r) => {
    const a = document.createElement("a");
    a.href = await fetchBlob(r, fmt(r));
    a.download = `${r.id}.${fmt(r)}`;
    a.click();
  };
  return html`<section class="card"><h2>Recordings</h2><table><tbody>
    ${s.recordings.map((r) => html`<tr><td>${r.id}</td><td>${r.status}</td><td>${r.created_at}</td>
      <td>${sources[r.id] ? html`<audio controls src=${sources[r.id]} />`
        : html`<${Button} label="listen" run=${async () => setSources({ ...sources, [r.id]: await fetchBlob(r, fmt(r)) })} />`}
        <${Button} label="download" run=${() => download(r)} /></td></tr>`)}
  </tbody></table></section>`;
}

function Deliveries({ s }) {
  return html`<section class="card"><h2>Webhook deliveries (failures first)</h2><table>
    <thead><tr><th>status</th><th>event</th><th>occurred</th><th>last attempt</th><th></th></tr></thead><tbody>
    ${s.deliveries.map((d) => {
      const p = d.webhook.payload || {};
      const last = d.attempts[d.attempts.length - 1];
      const target = p.call_control_id ? { call_control_id: p.call_control_id } : p.conference_id ? { conference_id: p.conference_id } : null;
      return html`<tr data-delivery=${d.id}><td><span class=${"badge" + (d.status === "failed" ? " failed" : "")}>${d.status}</span></td>
        <td>${d.webhook.event_type}</td><td>${d.webhook.occurred_at}</td><td>${last ? last.error || (last.http.response && last.http.response.status) : ""}</td>
        <td>${target ? html`<${Button} label="replay" run=${() => api("POST", "/v2/webhook_deliveries/replay", target)} />` : ""}</td></tr>`;
    })}
  </tbody></table></section>`;
}

function Playground({ s }) {
  const [app, setApp] = useState("");
  const [phone, setPhone] = useState("tester;tone=500");
  const [target, setTarget] = useState("conference");
  const [name, setName] = useState("playground");
  const [heard, setHeard] = useState({});
  const [error, setError] = useState("");
  const connection = app || (s.applications[0] && s.applications[0].id) || "";
  const call = async () => {
    setError("");
    const body = { connection_id: connection, from: "+15550000000", to: `virtual:${phone}` };
    if (target === "conference") body.conference_config = { conference_name: name, start_conference_on_create: true };
    const dialled = await api("POST", "/v2/calls", body);
    const cid = dialled.data.call_control_id;
    if (target === "queue") {
      await waitFor((e) => e.event_type === "call.answered" && e.payload.call_control_id === cid);
      await api("POST", `/v2/calls/${enc(cid)}/actions/enqueue`, { queue_name: name });
    }
  };
  const listen = async (cid) => {
    const response = await fetch(`/virtual/calls/${enc(cid)}/heard.wav?seconds=5`, { headers: { Authorization: `Bearer ${apiKey}` } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    setHeard({ ...heard, [cid]: URL.createObjectURL(await response.blob()) });
  };
  const phones = s.calls.filter((c) => c.to.startsWith("virtual:") || c.from.startsWith("virtual:"));
  return html`<div><section class="card"><h2>Call a virtual phone in</h2>
    <div class="row">
      <select value=${connection} onChange=${(e) => setApp(e.target.value)}>
        ${s.applications.map((a) => html`<option value=${a.id}>${a.application_name}</option>`)}</select>
      <label>phone <input value=${phone} onInput=${(e) => setPhone(e.target.value)} /></label>
      <select value=${target} onChange=${(e) => setTarget(e.target.value)}>
        <option value="conference">into conference</option><option value="queue">into queue</option></select>
      <input value=${name} onInput=${(e) => setName(e.target.value)} />
      <${Button} label="call" run=${() => call().catch((e) => setError(e.message))} />
    </div>
    ${error ? html`<p class="error">${error}</p>` : ""}
  </section>
  <section class="card"><h2>Virtual phones</h2><table><tbody>
    ${phones.map((c) => html`<tr><td>${c.call_control_id}</td><td>${c.to}</td><td>${c.state}</td>
      <td><${Button} label="listen (last 5 s)" run=${() => listen(c.call_control_id)} />
      ${heard[c.call_control_id] ? html`<audio controls src=${heard[c.call_control_id]} />` : ""}</td></tr>`)}
  </tbody></table></section></div>`;
}

const PAGES = { overview: Overview, conferences: Conferences, queues: Queues, calls: Calls, recordings: Recordings,
  webhooks: Deliveries, playground: Playground };

function SignIn({ done }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState("");
  const submit = async (e) => {
    e.preventDefault();
    apiKey = key.trim();
    try {
      await api("GET", "/v2/conferences?page[size]=1");
      sessionStorage.setItem(KEY, apiKey);
      done();
    } catch (err) {
      setError(err.message);
    }
  };
  return html`<form class="signin" onSubmit=${submit}><h2>callroom console</h2>
    <label>API key <input type="password" name="key" value=${key} onInput=${(e) => setKey(e.target.value)} /></label>
    <button class="act" type="submit">Sign in</button>
    ${error ? html`<p class="error">${error}</p>` : ""}</form>`;
}

function App() {
  const s = useStore();
  const [signedIn, setSignedIn] = useState(Boolean(apiKey));
  const [page, setPage] = useState(location.hash.slice(1) || "overview");
  useEffect(() => { if (signedIn) listen(); }, [signedIn]);
  useEffect(() => {
    const f = () => setPage(location.hash.slice(1) || "overview");
    addEventListener("hashchange", f);
    return () => removeEventListener("hashchange", f);
  }, []);
  if (!signedIn) return html`<${SignIn} done=${() => setSignedIn(true)} />`;
  const Page = PAGES[page] || Overview;
  return html`<div>
    <header><h1>callroom</h1>
      <nav>${Object.keys(PAGES).map((p) => html`<button class=${p === page ? "on" : ""} data-page=${p}
        onClick=${() => { location.hash = p; }}>${p}</button>`)}</nav>
      <span class=${"live " + (s.live ? "up" : "down")} data-live=${s.live ? "up" : "down"}>${s.live ? "live" : "offline"}</span>
      <button class="act" onClick=${() => { sessionStorage.removeItem(KEY); location.reload(); }}>sign out</button>
    </header>
    <main><${Page} s=${s} /></main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
