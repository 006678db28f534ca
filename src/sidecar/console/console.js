// The whc console: four pages over the admin API. Everything a receiver or an event can put
// on the page goes in as text (textContent), never as markup.
'use strict';

const TOKEN_KEY = 'whc-admin-token';
const PAGE_SIZE = 50;

// ---- helpers -------------------------------------------------------------------------------

/** Builds an element: `el('td', {class: 'num'}, 'text', child)`. Strings become text nodes. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** A time in unix ms as `2026-12-02 01:22:32Z`. */
function when(ms) {
  if (ms === null || ms === undefined) return '';
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

function statusPill(text, kind) {
  return el('span', { class: 'status ' + (kind || text) }, text);
}

function say(text, isError) {
  const box = document.getElementById('message');
  box.textContent = text || '';
  box.className = isError ? 'error' : '';
}

class ApiError extends Error {}

/** Calls the admin API with the session's token; the answer's JSON, or an ApiError. */
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body, cache: 'no-store' });
  } catch (err) {
    throw new ApiError('the admin API did not answer: ' + err.message);
  }
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (res.status === 401) {
    askForToken(Boolean(token));
    throw new ApiError('the admin API asks for its token');
  }
  if (!res.ok) {
    throw new ApiError((data && data.error) || res.status + ' ' + res.statusText);
  }
  return data;
}

function askForToken(wrong) {
  const form = document.getElementById('token-form');
  form.hidden = false;
  if (wrong) sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById('token-input').focus();
}

function setupToken() {
  const form = document.getElementById('token-form');
  const forget = document.getElementById('forget-token');
  forget.hidden = !sessionStorage.getItem(TOKEN_KEY);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = document.getElementById('token-input');
    if (!input.value) return;
    sessionStorage.setItem(TOKEN_KEY, input.value);
    input.value = '';
    form.hidden = true;
    forget.hidden = false;
    route();
  });
  forget.addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    forget.hidden = true;
    say('The token is forgotten.');
  });
}

/** Shows a labelled list of headers `[{name, value}]` or `[[name, value]]`. */
function headerList(headers) {
  const dl = el('dl', { class: 'facts mono' });
  for (const h of headers || []) {
    const [name, value] = Array.isArray(h) ? h : [h.name, h.value];
    dl.append(el('dt', {}, name), el('dd', {}, value));
  }
  return dl;
}

/** A stored header as the admin API lists it: a literal value, or an environment variable's name. */
function storedHeader(h) {
  if ('env' in h) return [h.name, '${' + h.env + '} (from the environment, masked)'];
  return [h.name, h.value];
}

function facts(pairs) {
  const dl = el('dl', { class: 'facts' });
  for (const [name, value] of pairs) {
    if (value === undefined) continue;
    dl.append(el('dt', {}, name), el('dd', {}, value === null ? '—' : value));
  }
  return dl;
}

let refreshTimer = null;

// ---- Deliveries ----------------------------------------------------------------------------

const log = { filter: {}, cursors: [], selected: null };

async function deliveriesPage(main) {
  main.append(el('h1', {}, 'Deliveries'));
  const webhookSelect = el('select', { name: 'webhook', id: 'f-webhook' }, el('option', { value: '' }, 'any'));
  const form = el('form', { class: 'filters panel', id: 'filters' },
    el('label', {}, 'Status', el('select', { name: 'status', id: 'f-status' },
      ['', 'pending', 'delivered', 'dead'].map((s) => el('option', { value: s }, s || 'any')))),
    el('label', {}, 'Webhook', webhookSelect),
    el('label', {}, 'Event type', el('select', { name: 'type', id: 'f-type' },
      ['', 'conversion', 'refund', ...Array.from({ length: 10 }, (_, i) => 'event' + (i + 1))]
        .map((s) => el('option', { value: s }, s || 'any')))),
    el('label', {}, 'From (UTC)', el('input', { type: 'datetime-local', name: 'since', id: 'f-since' })),
    el('label', {}, 'To (UTC)', el('input', { type: 'datetime-local', name: 'until', id: 'f-until' })),
    el('label', {}, 'Event id or transaction', el('input', { type: 'search', name: 'q', id: 'f-q', placeholder: 'evt-1001, ORD-77' })),
    el('button', { type: 'submit', class: 'primary', id: 'apply' }, 'Apply'),
    el('button', { type: 'reset', id: 'reset' }, 'Clear'));
  const table = el('table', { id: 'deliveries' },
    el('thead', {}, el('tr', {}, ['Created', 'Status', 'Webhook', 'Event', 'Attempts', 'Last answer', 'Delivery']
      .map((h) => el('th', {}, h)))),
    el('tbody'));
  const pager = el('div', { class: 'pager' },
    el('button', { type: 'button', id: 'newest' }, '⇤ Newest'),
    el('button', { type: 'button', id: 'newer' }, '← Newer'),
    el('button', { type: 'button', id: 'older' }, 'Older →'),
    el('span', { class: 'muted', id: 'page-info' }));
  const detail = el('section', { id: 'delivery', class: 'panel', 'aria-live': 'polite' },
    el('p', { class: 'muted' }, 'Open a delivery to see its request and attempts.'));
  main.append(form, el('div', { class: 'split' }, el('div', {}, table, pager), detail));

  for (const [k, v] of Object.entries(log.filter)) {
    const input = form.elements[k];
    if (input) input.value = v;
  }
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    log.filter = {};
    for (const input of form.elements) {
      if (input.name && input.value) log.filter[input.name] = input.value;
    }
    log.cursors = [];
    loadPage();
  });
  form.addEventListener('reset', () => { log.filter = {}; log.cursors = []; setTimeout(loadPage); });
  pager.querySelector('#newest').addEventListener('click', () => { log.cursors = []; loadPage(); });
  pager.querySelector('#newer').addEventListener('click', () => { log.cursors.pop(); loadPage(); });
  pager.querySelector('#older').addEventListener('click', () => {
    if (log.next) { log.cursors.push(log.next); loadPage(); }
  });

  api('GET', '/v1/webhooks').then((w) => {
    for (const hook of w.webhooks) webhookSelect.append(el('option', { value: hook.webhook.name }, hook.webhook.name));
    if (log.filter.webhook) webhookSelect.value = log.filter.webhook;
  }).catch(() => {});
  await loadPage();
  if (log.selected) openDelivery(log.selected);
}

function logQuery() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(log.filter)) {
    if (k === 'since' || k === 'until') q.set(k, String(Date.parse(v + 'Z')));
    else q.set(k, v);
  }
  q.set('limit', String(PAGE_SIZE));
  const after = log.cursors[log.cursors.length - 1];
  if (after) q.set('after', after);
  return q.toString();
}

async function loadPage() {
  const tbody = document.querySelector('#deliveries tbody');
  if (!tbody) return;
  let answer;
  try {
    answer = await api('GET', '/v1/deliveries?' + logQuery());
  } catch (err) {
    say(err.message, true);
    return;
  }
  say('');
  clear(tbody);
  log.next = answer.next;
  for (const d of answer.deliveries) tbody.append(deliveryRow(d));
  if (!answer.deliveries.length) {
    tbody.append(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'No deliveries match.')));
  }
  document.getElementById('older').disabled = !answer.next;
  document.getElementById('newer').disabled = log.cursors.length === 0;
  document.getElementById('newest').disabled = log.cursors.length === 0;
  document.getElementById('page-info').textContent =
    'page ' + (log.cursors.length + 1) + ' · ' + answer.deliveries.length + ' shown';
}

/** One row of the log. */
function deliveryRow(d) {
  // UUID v7 ids start with the time: the tail tells rows apart.
  const open = el('button', { type: 'button', class: 'link mono', 'data-id': d.id, title: d.id, onclick: () => openDelivery(d.id) }, '…' + d.id.slice(-12));
  const row = el('tr', { 'data-id': d.id, 'data-status': d.status },
    el('td', { class: 'mono' }, when(d.created_at)),
    el('td', {}, statusPill(d.status === 'pending' && d.attempts > 0 ? 'retrying' : d.status)),
    el('td', {}, d.webhook),
    el('td', { class: 'mono' }, d.event),
    el('td', { class: 'num' }, d.attempts + ' / ' + d.max_attempts),
    el('td', {}, d.last_status_code ? String(d.last_status_code) : (d.last_error ? 'no answer' : '')),
    el('td', {}, open));
  if (d.id === log.selected) row.classList.add('selected');
  return row;
}

async function openDelivery(id) {
  log.selected = id;
  for (const row of document.querySelectorAll('#deliveries tbody tr')) {
    row.classList.toggle('selected', row.dataset.id === id);
  }
  const box = document.getElementById('delivery');
  if (!box) return;
  let d;
  try {
    d = await api('GET', '/v1/deliveries/' + encodeURIComponent(id));
  } catch (err) {
    say(err.message, true);
    return;
  }
  // The row shows the delivery as it is now, too.
  const row = document.querySelector('#deliveries tbody tr[data-id="' + CSS.escape(id) + '"]');
  if (row) row.replaceWith(deliveryRow(d));
  clear(box);
  const replay = el('button', { type: 'button', class: 'primary', id: 'replay', disabled: d.status !== 'dead' }, 'Replay');
  replay.addEventListener('click', async () => {
    try {
      await api('POST', '/v1/deliveries/' + encodeURIComponent(id) + '/retry');
      await loadPage();
      await openDelivery(id);
      say('Delivery ' + id + ' is queued again.');
    } catch (err) { say(err.message, true); }
  });
  const replayAll = el('button', { type: 'button', id: 'replay-all' }, 'Replay all dead of ' + d.webhook);
  replayAll.addEventListener('click', async () => {
    const said = await replayDead(d.webhook);
    await loadPage();
    await openDelivery(id);
    if (said) say(said);
  });
  const status = d.status === 'pending' && d.attempts > 0 ? 'retrying' : d.status;
  box.append(
    el('h2', {}, 'Delivery ', el('span', { class: 'mono' }, d.id), ' ', statusPill(status)),
    el('div', { class: 'row-actions' }, replay, replayAll),
    facts([
      ['Webhook', d.webhook],
      ['Event', d.event],
      ['Created', when(d.created_at)],
      ['Updated', when(d.updated_at)],
      ['Attempts', d.attempts + ' of ' + d.max_attempts],
      ['Next retry', d.status === 'pending' ? when(d.next_attempt_at) : null],
      ['Timeout', d.timeout_ms + ' ms'],
      ['Signed with', d.signed_with ? '${' + d.signed_with + '} (masked)' : null],
    ]),
    el('h3', {}, 'Request as sent'),
    el('pre', { id: 'request-line' }, d.method + ' ' + d.url),
    headerList((d.headers || []).map(storedHeader)),
    d.body !== null ? el('pre', { id: 'request-body' }, d.body) : el('p', { class: 'muted' }, 'No body.'),
    el('h3', {}, 'Attempts'),
    attemptList(d));
}

/** Every kept attempt, oldest first; for a delivery stored before attempts were kept, the last. */
function attemptList(d) {
  const history = d.history && d.history.length ? d.history : (d.attempts ? [{
    at: d.updated_at, outcome: d.status === 'pending' ? 'retry' : d.status, status_code: d.last_status_code,
    error: d.last_error, excerpt: d.response_excerpt, elapsed_ms: d.last_attempt_ms,
  }] : []);
  if (!history.length) return el('p', { class: 'muted' }, 'Not tried yet.');
  const list = el('ol', { class: 'attempts', id: 'attempts' });
  history.forEach((a, i) => {
    const last = i === history.length - 1;
    list.append(el('li', { 'data-outcome': a.outcome },
      el('div', {}, statusPill(a.outcome, a.outcome === 'retry' ? 'retrying' : a.outcome), ' ',
        a.status_code ? 'HTTP ' + a.status_code : 'no answer', ' · ',
        a.elapsed_ms === null ? '' : a.elapsed_ms + ' ms', ' · ', el('span', { class: 'mono' }, when(a.at))),
      a.error ? el('div', { class: 'fails' }, a.error) : null,
      a.excerpt ? el('pre', { class: 'excerpt', id: last ? 'response-excerpt' : null }, a.excerpt) : null));
  });
  return list;
}

/** Replays a webhook's dead deliveries; says, and returns, how many. */
async function replayDead(webhook) {
  try {
    const r = await api('POST', '/v1/webhooks/' + encodeURIComponent(webhook) + '/replay');
    const said = r.replayed + ' dead deliveries of ' + webhook + ' are queued again.';
    say(said);
    return said;
  } catch (err) {
    say(err.message, true);
    return null;
  }
}

// ---- Webhooks ------------------------------------------------------------------------------

function counts(c) {
  return el('span', { class: 'mono nowrap' },
    el('span', { title: 'delivered' }, String(c.delivered)), ' / ',
    el('span', { title: 'retrying' }, String(c.retrying)), ' / ',
    el('span', { title: 'dead' }, String(c.dead)));
}

async function webhooksPage(main) {
  main.append(el('h1', {}, 'Webhooks'));
  const w = await api('GET', '/v1/webhooks');
  main.append(el('section', { class: 'panel', id: 'rules-state' },
    facts([
      ['Rules', 'version ' + w.version + ' · ' + w.hash.slice(0, 12)],
      ['Files', w.files.join(', ')],
      ['Loaded', w.loaded_at],
      ['Reloads', w.reloads_ok + ' ok, ' + w.reloads_failed + ' failed'],
      ['Watcher', w.watcher],
    ]),
    w.last_error
      ? el('div', { id: 'reload-error' },
        el('h3', {}, 'The last reload failed', w.last_error_at ? ' at ' + w.last_error_at : '', '; the previous rules keep serving'),
        el('pre', {}, w.last_error))
      : el('p', { class: 'muted', id: 'reload-error' }, 'The last reload succeeded.')));
  const tbody = el('tbody');
  main.append(el('table', { id: 'webhooks' },
    el('thead', {}, el('tr', {}, ['Webhook', 'Where', 'Events', 'Conditions', 'Request', 'Last hour', 'Last day', 'Success', '']
      .map((h) => el('th', {}, h)))),
    tbody), el('p', { class: 'hint' }, 'Counts are delivered / retrying / dead by when each delivery last changed; success is delivered of settled today.'));
  for (const item of w.webhooks) {
    const hook = item.webhook;
    const result = el('td', { colspan: 9, class: 'test-result' });
    const resultRow = el('tr', { hidden: true, 'data-result-for': hook.name }, result);
    const test = el('button', { type: 'button', class: 'primary', 'data-test': hook.name }, 'Test');
    test.addEventListener('click', () => runTest(hook.name, test, result, resultRow));
    const replay = el('button', { type: 'button', 'data-replay': hook.name }, 'Replay dead');
    replay.addEventListener('click', () => replayDead(hook.name));
    tbody.append(el('tr', { 'data-webhook': hook.name },
      el('td', {}, el('strong', {}, hook.name), hook.disabled ? [' ', statusPill('disabled')] : null),
      el('td', { class: 'mono' }, hook.file + ':' + hook.line),
      el('td', {}, hook.events.join(', ')),
      el('td', {}, hook.conditions.length
        ? el('ul', { class: 'plain mono' }, hook.conditions.map((c) => el('li', {}, c)))
        : el('span', { class: 'muted' }, 'always')),
      el('td', { class: 'mono' }, hook.method + ' ' + hook.url),
      el('td', {}, counts(item.last_hour)),
      el('td', {}, counts(item.last_day)),
      el('td', { class: 'num' }, item.success_rate === null ? '—' : (item.success_rate * 100).toFixed(1) + ' %'),
      el('td', {}, el('div', { class: 'row-actions' }, test, replay))), resultRow);
  }
}

async function runTest(name, button, cell, row) {
  button.disabled = true;
  row.hidden = false;
  clear(cell).append(el('span', { class: 'muted' }, 'Sending a test request to ' + name + '…'));
  try {
    const r = await api('POST', '/v1/webhooks/' + encodeURIComponent(name) + '/test');
    clear(cell);
    const verdict = r.ok ? statusPill('ok') : statusPill('failed', 'bad');
    cell.append(el('div', { class: 'panel test-report', 'data-report-for': name },
      el('h3', {}, 'Test of ', name, ' ', verdict, ' ', el('span', { class: 'muted' }, r.elapsed_ms.toFixed(1) + ' ms')),
      r.failure ? el('p', { class: 'fails' }, r.failure) : null,
      el('div', { class: 'split' },
        el('div', {},
          el('h3', {}, 'Request'),
          el('pre', {}, r.request.method + ' ' + r.request.url),
          headerList(r.request.headers),
          r.request.body !== null ? el('pre', {}, r.request.body) : null),
        el('div', {},
          el('h3', {}, 'Response'),
          r.response
            ? [el('pre', { class: 'response-status' }, 'HTTP ' + r.response.status),
              headerList(r.response.headers),
              el('pre', { class: 'response-body' }, r.response.body + (r.response.truncated ? '\n… (cut)' : ''))]
            : el('p', { class: 'muted' }, r.error || 'No answer.')))));
  } catch (err) {
    clear(cell).append(el('p', { class: 'fails' }, err.message));
  } finally {
    button.disabled = false;
  }
}

// ---- Try an event --------------------------------------------------------------------------

async function tryPage(main) {
  main.append(el('h1', {}, 'Try an event'),
    el('p', { class: 'hint' }, 'Paste an event in the tracker\'s format, or pick one; the sidecar\'s own rules say, per webhook, whether it fires and why. Nothing is stored or sent.'));
  const pick = el('select', { id: 'pick' }, el('option', { value: '' }, 'Pick an event…'));
  const text = el('textarea', { id: 'event', spellcheck: 'false', 'aria-label': 'Event JSON' });
  const go = el('button', { type: 'button', class: 'primary', id: 'explain' }, 'Explain');
  const out = el('section', { id: 'verdicts', 'aria-live': 'polite' });
  main.append(el('div', { class: 'split' },
    el('div', {}, el('div', { class: 'row-actions' }, pick, go), text),
    out));

  const examples = await api('GET', '/v1/examples');
  const group = el('optgroup', { label: 'Examples' });
  for (const name of Object.keys(examples)) group.append(el('option', { value: 'example:' + name }, name));
  pick.append(group);
  api('GET', '/v1/deliveries?limit=100').then((answer) => {
    const recent = el('optgroup', { label: 'Recent stored events' });
    const seen = new Set();
    for (const d of answer.deliveries) {
      if (seen.has(d.event) || seen.size >= 15) continue;
      seen.add(d.event);
      recent.append(el('option', { value: 'stored:' + d.event }, d.event));
    }
    if (seen.size) pick.append(recent);
  }).catch(() => {});
  pick.addEventListener('change', async () => {
    const [kind, name] = [pick.value.split(':')[0], pick.value.slice(pick.value.indexOf(':') + 1)];
    try {
      if (kind === 'example') text.value = JSON.stringify(examples[name], null, 2);
      if (kind === 'stored') {
        const event = await api('GET', '/v1/events/' + encodeURIComponent(name));
        text.value = JSON.stringify(event, null, 2);
      }
    } catch (err) { say(err.message, true); }
  });
  go.addEventListener('click', () => explainEvent(text.value, out));
  text.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) explainEvent(text.value, out);
  });
}

async function explainEvent(json, out) {
  clear(out);
  let r;
  try {
    r = await api('POST', '/v1/explain', json);
  } catch (err) {
    out.append(el('p', { class: 'fails', id: 'explain-error' }, err.message));
    return;
  }
  out.append(el('h2', {}, 'Event ', el('span', { class: 'mono' }, r.event.id || '(no id)'), ' · ', r.event.type));
  for (const v of r.webhooks) {
    const verdict = v.fires ? statusPill('fires')
      : v.disabled && v.url ? statusPill('would fire, but is disabled', 'disabled')
        : !v.listens ? statusPill('does not listen to ' + r.event.type, 'off')
          : statusPill('does not fire', 'dead');
    const rows = v.conditions.map((c) => el('tr', {},
      el('td', { class: c.holds ? 'holds' : 'fails' }, c.holds ? '✓' : '✗'),
      el('td', { class: 'mono' }, c.condition),
      el('td', { class: 'mono' }, c.value)));
    out.append(el('div', { class: 'panel verdict', 'data-webhook': v.webhook, 'data-fires': String(v.fires) },
      el('h3', {}, v.webhook, ' ', verdict),
      rows.length ? el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', {}, 'Condition'), el('th', {}, 'Value read'))), el('tbody', {}, rows))
        : el('p', { class: 'muted' }, 'No conditions.'),
      v.url ? el('pre', { class: 'url' }, v.url) : null));
  }
}

// ---- Health --------------------------------------------------------------------------------

async function healthPage(main) {
  main.append(el('h1', {}, 'Health'));
  const cards = el('div', { class: 'cards', id: 'health-cards' });
  const charts = el('div', { class: 'charts' });
  main.append(cards, el('h2', {}, 'The last hour'), charts);
  const chartOf = (id, title) => {
    const canvas = el('canvas', { id, width: 720, height: 320, role: 'img', 'aria-label': title });
    charts.append(el('div', { class: 'panel' }, el('h3', {}, title), canvas));
    return canvas;
  };
  const depthChart = chartOf('chart-queue', 'Queue depth');
  const eventsChart = chartOf('chart-events', 'Events per minute');
  const attemptsChart = chartOf('chart-attempts', 'Attempts per minute (delivered, retried, dead)');

  const draw = async () => {
    const [health, ready, w, history] = await Promise.all([
      probe('/healthz'), probe('/readyz'), api('GET', '/v1/webhooks'), api('GET', '/v1/history')]);
    const samples = history.samples;
    const last = samples[samples.length - 1] || {};
    clear(cards).append(
      card('Store', statusPill(health.status, health.status === 'ok' ? 'ok' : 'bad'), health.reason),
      card('Ready', statusPill(ready.status, ready.status === 'ready' ? 'ok' : 'bad'), ready.reason),
      card('Queue depth', el('span', { class: 'big', id: 'queue-depth' }, String(last.queue_depth ?? '—'))),
      pauseCard(w.paused));
    showPaused(w.paused);
    const perMinute = (key) => samples.slice(1).map((s, i) => {
      const span = (s.at - samples[i].at) / 60000;
      return span > 0 ? Math.max(0, s[key] - samples[i][key]) / span : 0;
    });
    const at = samples.slice(1).map((s) => s.at);
    lineChart(depthChart, samples.map((s) => s.at), [{ values: samples.map((s) => s.queue_depth), color: '#0b5cad' }]);
    lineChart(eventsChart, at, [{ values: perMinute('events'), color: '#0b5cad' }]);
    lineChart(attemptsChart, at, [
      { values: perMinute('delivered'), color: '#1a7f37' },
      { values: perMinute('retried'), color: '#9a6700' },
      { values: perMinute('dead'), color: '#c62828' }]);
  };
  await draw();
  refreshTimer = setInterval(() => draw().catch((err) => say(err.message, true)), 10000);
}

/** A health route's answer, whatever its status. */
async function probe(path) {
  try {
    const res = await fetch(path, { cache: 'no-store' });
    return await res.json();
  } catch (err) {
    return { status: 'unreachable', reason: err.message };
  }
}

function card(title, value, note) {
  return el('div', { class: 'card' }, el('div', { class: 'muted' }, title), el('div', {}, value), note ? el('div', { class: 'hint' }, note) : null);
}

function pauseCard(paused) {
  const button = el('button', { type: 'button', id: 'pause-toggle', class: paused ? 'primary' : 'danger' },
    paused ? 'Resume deliveries' : 'Pause deliveries');
  button.addEventListener('click', async () => {
    try {
      const r = await api('POST', '/v1/deliveries/' + (paused ? 'resume' : 'pause'));
      say(r.paused ? 'Deliveries are paused: events are still accepted and stored.' : 'Deliveries resumed.');
      route();
    } catch (err) { say(err.message, true); }
  });
  return card('Deliveries', el('span', { id: 'paused-state' }, paused ? 'paused' : 'running'), button);
}

function showPaused(paused) {
  document.getElementById('paused-badge').hidden = !paused;
}

/** Draws lines over time on a canvas, with the highest value and the time span as labels. */
function lineChart(canvas, times, series) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  const pad = { left: 56, right: 12, top: 12, bottom: 28 };
  ctx.clearRect(0, 0, width, height);
  ctx.font = '20px system-ui, sans-serif';
  ctx.fillStyle = '#5b6472';
  ctx.strokeStyle = '#d8dde5';
  ctx.lineWidth = 1;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  for (const frac of [0, 0.5, 1]) {
    const y = pad.top + plotH * (1 - frac);
    ctx.beginPath(); ctx.moveTo(pad.left, y); ctx.lineTo(width - pad.right, y); ctx.stroke();
    const label = max * frac;
    ctx.fillText(label >= 10 ? label.toFixed(0) : label.toFixed(1), 4, y + 6);
  }
  if (times.length < 2) {
    ctx.fillText('collecting: a sample every 10 s', pad.left + 8, pad.top + plotH / 2);
    return;
  }
  const t0 = times[0];
  const span = Math.max(1, times[times.length - 1] - t0);
  ctx.fillText(when(t0).slice(11), pad.left, height - 6);
  const end = when(times[times.length - 1]).slice(11);
  ctx.fillText(end, width - pad.right - ctx.measureText(end).width, height - 6);
  ctx.lineWidth = 2.5;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.beginPath();
    s.values.forEach((v, i) => {
      const x = pad.left + plotW * ((times[i] - t0) / span);
      const y = pad.top + plotH * (1 - v / max);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

// ---- routing -------------------------------------------------------------------------------

const PAGES = { deliveries: deliveriesPage, webhooks: webhooksPage, try: tryPage, health: healthPage };

async function route() {
  const name = (location.hash || '#deliveries').slice(1);
  const page = PAGES[name] || deliveriesPage;
  if (refreshTimer) { clearInterval(refreshTimer); refreshTimer = null; }
  for (const link of document.querySelectorAll('header nav a')) {
    link.classList.toggle('current', link.id === 'nav-' + name);
    if (link.id === 'nav-' + name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const main = clear(document.getElementById('page'));
  main.dataset.page = name;
  delete main.dataset.ready;
  say('');
  try {
    await page(main);
    main.dataset.ready = name;
  } catch (err) {
    say(err.message, err instanceof ApiError);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  setupToken();
  window.addEventListener('hashchange', route);
  api('GET', '/v1/webhooks').then((w) => showPaused(w.paused)).catch(() => {});
  route();
});
