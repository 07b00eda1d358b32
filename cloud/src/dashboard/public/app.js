// storelink operations dashboard: plain JS, no build step, no CDN. It reads the same
// /api/v1 routes any client uses and polls them (docs/fleet-alerts-dashboard.md
// [DASH-LIVE-1]); `?poll=ms` changes the period (default 2000).

const POLL_MS = Math.max(250, Number(new URLSearchParams(location.search).get('poll')) || 2000);
const API = '/api/v1';
const state = { view: 'fleet', gateway: null, gateways: [], alerts: [], judged: new Map(), lastOk: 0 };

/** The store's presence state, refined by the cloud's judgement when offered (e.g. stalled). */
function presenceOf(g) {
  const j = state.judged.get(g.id);
  return j ? (j.reason ? `${j.state} (${j.reason})` : j.state) : g.presence.state;
}

/** Optional panels of the gateway detail: shown when the route answers (other fleet parts). */
const OPTIONAL_PANELS = [
  {
    title: 'Presence (judged by the cloud)',
    path: (id) => `${API}/gateways/${encodeURIComponent(id)}/presence`,
  },
  { title: 'Shadow', path: (id) => `${API}/shadows/${encodeURIComponent(id)}` },
];

const $ = (sel) => document.querySelector(sel);

/** Builds an element: h('td', {class: 'x'}, 'text', child). Text is never parsed as HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function getJson(path) {
  const r = await fetch(path, { headers: { accept: 'application/json' } });
  if (r.status === 404) return undefined;
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : '—');
function fmtAge(ms) {
  if (ms === null || ms === undefined) return '—';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
const ago = (ms) => (ms ? `${fmtAge(Date.now() - ms)} ago` : '—');

function replaceRows(tbody, rows, cols, empty) {
  tbody.replaceChildren(
    ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: cols, class: 'empty' }, empty))]),
  );
}

function activeAlertsOf(gatewayId) {
  return state.alerts.filter((a) => a.gateway === gatewayId && a.state === 'active');
}

// ---------------- fleet ----------------

function renderFleet() {
  const bySite = new Map();
  for (const g of state.gateways) {
    if (!bySite.has(g.site)) bySite.set(g.site, []);
    bySite.get(g.site).push(g);
  }
  $('#site-map').replaceChildren(
    ...[...bySite.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([site, gws]) =>
        h(
          'div',
          { class: 'site', 'data-site': site },
          h(
            'h3',
            {},
            `${site} `,
            h('small', {}, `${gws.filter((g) => g.presence.state === 'online').length}/${gws.length} online`),
          ),
          h(
            'div',
            { class: 'tiles' },
            gws.map((g) =>
              h('span', {
                class: `tile ${g.presence.state}${activeAlertsOf(g.id).length ? ' alerting' : ''}`,
                title: `${g.id} (${g.presence.state})`,
                'data-gateway': g.id,
                onclick: () => selectGateway(g.id),
              }),
            ),
          ),
        ),
      ),
  );
  replaceRows(
    $('#gateway-rows'),
    state.gateways.map((g) => {
      const hb = g.presence.heartbeat;
      const n = activeAlertsOf(g.id).length;
      return h(
        'tr',
        { class: 'clickable', 'data-gateway': g.id, onclick: () => selectGateway(g.id) },
        h('td', {}, g.name ? `${g.id} (${g.name})` : g.id),
        h('td', {}, g.site),
        h('td', { class: `state-${g.presence.state}` }, presenceOf(g)),
        h('td', {}, ago(g.presence.lastSeen)),
        h('td', {}, hb ? `${hb.outbox.depth} events` : '—'),
        h('td', {}, hb && hb.outbox.depth > 0 ? fmtAge(hb.outbox.oldestAgeMs) : '—'),
        h('td', {}, h('span', { class: `badge${n ? '' : ' zero'}` }, n)),
      );
    }),
    7,
    'no gateways registered',
  );
}

async function selectGateway(id) {
  state.gateway = id;
  await renderGatewayDetail();
}

async function renderGatewayDetail() {
  const box = $('#gateway-detail');
  const id = state.gateway;
  if (!id) {
    box.hidden = true;
    return;
  }
  const [g, devices, alerts, history] = await Promise.all([
    getJson(`${API}/gateways/${encodeURIComponent(id)}`),
    getJson(`${API}/gateways/${encodeURIComponent(id)}/devices`),
    getJson(`${API}/alerts?gateway=${encodeURIComponent(id)}&limit=20`),
    // Absent (404) when the cloud keeps no presence history (non-SQL store).
    getJson(`${API}/gateways/${encodeURIComponent(id)}/presence/history?limit=20`).catch(() => undefined),
  ]);
  if (!g) {
    box.hidden = true;
    return;
  }
  const optional = await Promise.all(
    OPTIONAL_PANELS.map(async (p) => ({ p, body: await getJson(p.path(id)).catch(() => undefined) })),
  );
  const p = g.presence;
  const hb = p.heartbeat;
  box.replaceChildren(
    h('h2', {}, `Gateway ${g.id}`),
    h(
      'dl',
      {},
      h('dt', {}, 'Site'),
      h('dd', {}, g.site),
      h('dt', {}, 'State'),
      h('dd', { class: `state-${p.state}` }, p.state),
      h('dt', {}, 'Online since'),
      h('dd', {}, fmtTime(p.onlineSince)),
      h('dt', {}, 'Last seen'),
      h('dd', {}, ago(p.lastSeen)),
      h('dt', {}, 'Session (bdSeq)'),
      h('dd', {}, p.bdSeq ?? '—'),
      h('dt', {}, 'Version'),
      h('dd', {}, p.version ?? '—'),
      h('dt', {}, 'Outbox backlog'),
      h(
        'dd',
        {},
        hb
          ? `${hb.outbox.depth} events, ${hb.outbox.bytes} bytes, oldest ${fmtAge(hb.outbox.oldestAgeMs)}`
          : '—',
      ),
    ),
    h('h3', {}, 'Devices'),
    h(
      'table',
      { 'data-testid': 'devices' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', {}, 'Device'),
          h('th', {}, 'Online'),
          h('th', {}, 'Last event'),
          h('th', {}, 'Last seen'),
        ),
      ),
      h(
        'tbody',
        {},
        (devices?.items ?? []).map((d) =>
          h(
            'tr',
            {},
            h('td', {}, d.id),
            h('td', {}, d.online === null ? '?' : d.online ? 'yes' : 'no'),
            h('td', {}, d.lastEventType),
            h('td', {}, ago(d.lastSeen)),
          ),
        ),
      ),
    ),
    h('h3', {}, 'Alerts'),
    alertTable(alerts?.items ?? []),
    ...(history ? [h('h3', {}, 'Presence history'), presenceHistoryTable(history.items)] : []),
    ...optional
      .filter((o) => o.body !== undefined)
      .flatMap((o) => [
        h('h3', {}, o.p.title),
        h('pre', { 'data-panel': o.p.title }, JSON.stringify(o.body, null, 2)),
      ]),
  );
  box.hidden = false;
}

/** Presence transitions, newest first (docs/fleet-provisioning.md "Presence history"). */
function presenceHistoryTable(items) {
  const body = h('tbody', {});
  replaceRows(
    body,
    items.map((t) =>
      h(
        'tr',
        {},
        h('td', {}, fmtTime(t.at)),
        h('td', { class: `state-${t.state}` }, t.state),
        h('td', {}, t.reason ?? '—'),
        h('td', {}, t.bdSeq ?? '—'),
        h('td', {}, t.source),
      ),
    ),
    5,
    'no presence transitions recorded',
  );
  return h(
    'table',
    { 'data-testid': 'presence-history' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', {}, 'When'),
        h('th', {}, 'State'),
        h('th', {}, 'Reason'),
        h('th', {}, 'bdSeq'),
        h('th', {}, 'Source'),
      ),
    ),
    body,
  );
}

// ---------------- alerts ----------------

function alertRow(a) {
  return h(
    'tr',
    { 'data-alert': a.id, 'data-kind': a.kind, class: a.state === 'active' ? `sev-${a.severity}` : '' },
    h('td', {}, fmtTime(a.raisedAt)),
    h('td', {}, a.kind),
    h('td', {}, a.gateway),
    h('td', {}, a.subject || '—'),
    h('td', {}, a.message),
    h('td', {}, `${a.occurrences}×, last ${ago(a.lastSeenAt)}`),
    h('td', {}, a.state === 'active' ? 'active' : `cleared ${ago(a.clearedAt)}: ${a.clearReason ?? ''}`),
  );
}

function alertTable(items) {
  const tbody = h('tbody', {});
  replaceRows(tbody, items.map(alertRow), 7, 'no alerts');
  return h(
    'table',
    {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Raised', 'Kind', 'Gateway', 'Subject', 'Message', 'Seen', 'State'].map((t) => h('th', {}, t)),
      ),
    ),
    tbody,
  );
}

async function renderAlerts() {
  const q = new URLSearchParams({ limit: '200' });
  for (const [k, sel] of [
    ['state', '#f-state'],
    ['kind', '#f-kind'],
    ['gateway', '#f-gateway'],
  ]) {
    if ($(sel).value) q.set(k, $(sel).value);
  }
  const r = await getJson(`${API}/alerts?${q}`);
  replaceRows($('#alert-rows'), (r?.items ?? []).map(alertRow), 7, 'no alerts match');
}

function fillSelect(sel, values) {
  const el = $(sel);
  const have = new Set([...el.options].map((o) => o.value));
  for (const v of values) if (!have.has(v)) el.append(h('option', { value: v }, v));
}

// ---------------- orders and campaigns ----------------

async function renderOrders() {
  const r = await getJson(`${API}/orders?limit=50`);
  if (!r) return replaceRows($('#order-rows'), [], 7, 'vending is not enabled on this cloud');
  replaceRows(
    $('#order-rows'),
    r.items.map((o) =>
      h(
        'tr',
        {},
        h('td', {}, fmtTime(o.createdAt)),
        h('td', {}, o.id),
        h('td', {}, o.gateway),
        h('td', {}, o.slot),
        h('td', {}, `${(o.amountCents / 100).toFixed(2)} ${o.currency}`),
        h('td', {}, o.state),
        h('td', {}, o.failureReason ?? ''),
      ),
    ),
    7,
    'no orders yet',
  );
}

async function renderCampaigns() {
  const r = await getJson('/dashboard/data/campaigns');
  if (!r) return replaceRows($('#campaign-rows'), [], 7, 'price campaigns are not enabled on this cloud');
  replaceRows(
    $('#campaign-rows'),
    r.items.map((c) =>
      h(
        'tr',
        {},
        h('td', {}, fmtTime(c.createdAt)),
        h('td', {}, c.id),
        h('td', {}, c.site),
        h('td', {}, c.reason),
        h('td', {}, `${c.counts.confirmed}/${c.total}`),
        h('td', {}, c.counts.failed),
        h('td', {}, c.counts.sent + c.counts.pushed),
      ),
    ),
    7,
    'no campaigns yet',
  );
}

// ---------------- polling loop ----------------

async function refresh() {
  const [gws, alerts, judged] = await Promise.all([
    getJson(`${API}/gateways`),
    getJson(`${API}/alerts?state=active&limit=500`),
    // Judged presence (online / stalled / offline / revoked) where the cloud offers it.
    getJson(`${API}/fleet/presence`).catch(() => undefined),
  ]);
  state.judged = new Map((judged?.items ?? []).map((p) => [p.gateway, p]));
  state.gateways = gws?.items ?? [];
  state.alerts = alerts?.items ?? [];
  const n = state.alerts.length;
  $('#alert-count').textContent = String(n);
  $('#alert-count').className = `badge${n ? '' : ' zero'}`;
  fillSelect(
    '#f-gateway',
    state.gateways.map((g) => g.id),
  );
  renderFleet();
  if (state.view === 'fleet') await renderGatewayDetail();
  if (state.view === 'alerts') await renderAlerts();
  if (state.view === 'orders') await renderOrders();
  if (state.view === 'campaigns') await renderCampaigns();
}

async function loop() {
  try {
    await refresh();
    state.lastOk = Date.now();
    $('#live').textContent = `live · updated ${new Date(state.lastOk).toLocaleTimeString()}`;
    $('#live').className = 'live';
    document.body.dataset.loaded = 'true';
  } catch (e) {
    $('#live').textContent = `update failed (${e.message}); retrying`;
    $('#live').className = 'live stale';
  }
  setTimeout(loop, POLL_MS);
}

function show(view) {
  state.view = ['fleet', 'alerts', 'orders', 'campaigns'].includes(view) ? view : 'fleet';
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== `view-${state.view}`;
  for (const a of document.querySelectorAll('nav a'))
    a.classList.toggle('active', a.dataset.view === state.view);
  refresh().catch(() => undefined);
}

fetch('/dashboard/data/kinds')
  .then((r) => r.json())
  .then((kinds) => fillSelect('#f-kind', kinds))
  .catch(() => undefined);
for (const sel of ['#f-state', '#f-kind', '#f-gateway'])
  $(sel).addEventListener('change', () => renderAlerts());
window.addEventListener('hashchange', () => show(location.hash.slice(1)));
show(location.hash.slice(1));
loop();
