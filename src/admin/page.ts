/**
 * The monitoring page, embedded as strings so it works from the single binary (no files read at
 * run time, nothing loaded from elsewhere). The page is static and holds no data: everything it
 * shows comes from the admin API, which authenticates every call. It is served under a strict
 * CSP (no inline script or style), and every value from the API is put in the page with
 * `textContent`, never as markup.
 */

/** CSP of every admin response: scripts, styles and fetches from this origin only, nothing framed. */
export const ADMIN_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

export const ADMIN_PAGE_HTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mcp-oidc-proxy admin</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/admin/app.css">
<script src="/admin/app.js" defer></script>
</head>
<body>
<header>
  <h1>mcp-oidc-proxy <span class="muted">admin</span></h1>
  <span id="whoami" class="muted"></span>
  <button type="button" id="forget-token" hidden>Forget token</button>
</header>
<main>
<div id="error" role="alert" hidden></div>
<section id="login" hidden>
  <h2>Sign in</h2>
  <p id="login-reason"></p>
  <form id="token-form">
    <label for="token-input">Admin token</label>
    <input id="token-input" type="password" autocomplete="off" spellcheck="false" required>
    <button type="submit">Use token</button>
  </form>
  <p id="group-login">Members of ADMIN_GROUPS: <a href="/login?rd=%2Fadmin">sign in with your identity provider</a>.</p>
</section>
<section id="dashboard" hidden>
  <div class="cards">
    <div class="card"><h3>Requests/s</h3><p class="big" id="rps">–</p><p class="muted">total <span id="requests-total">0</span> · errors <span id="requests-errors">0</span></p></div>
    <div class="card"><h3>Latency</h3><p class="big"><span id="p50">–</span> <span class="unit">p50</span></p><p class="muted">p99 <span id="p99">–</span></p></div>
    <div class="card"><h3>Active sessions</h3><p class="big" id="sessions-active">–</p><p class="muted">store <span id="store-kind">–</span> · <span id="store-status">–</span></p></div>
    <div class="card"><h3>Open streams</h3><p class="big" id="streams-total">0</p><p class="muted">SSE <span id="streams-sse">0</span> · WebSocket <span id="streams-ws">0</span></p></div>
    <div class="card"><h3>Upstream</h3><p class="big" id="upstream-status">–</p><p class="muted">breaker <span id="breaker">–</span></p><p class="muted small" id="upstream-target"></p></div>
    <div class="card"><h3>Proxy</h3><p class="big" id="uptime">–</p><p class="muted">version <span id="version">–</span> · RSS <span id="memory">–</span></p><p class="muted small">identity provider <span id="idp-status">–</span></p></div>
  </div>
  <section id="servers-section">
    <h2>Servers</h2>
    <table><thead><tr><th>Name</th><th>Path</th><th>Target</th><th>Status</th><th>Breaker</th></tr></thead><tbody id="servers"></tbody></table>
  </section>
  <section id="funnel-section">
    <h2>Login funnel</h2>
    <ol id="funnel"></ol>
  </section>
  <section id="sessions-section" class="identity">
    <h2>Sessions</h2>
    <input id="search" type="search" placeholder="Search user, email or client" aria-label="Search">
    <table><thead><tr><th>User</th><th>Email</th><th>Groups</th><th>Signed in</th><th>Last seen</th><th></th></tr></thead><tbody id="sessions"></tbody></table>
  </section>
  <section id="clients-section" class="identity">
    <h2>MCP clients</h2>
    <table><thead><tr><th>Name</th><th>Client id</th><th>Source</th><th>Grants</th><th>Users</th><th>Registered</th><th></th></tr></thead><tbody id="clients"></tbody></table>
  </section>
  <section id="tokens-section" class="identity">
    <h2>Grants (refresh tokens)</h2>
    <table><thead><tr><th>User</th><th>Client</th><th>Scope</th><th>Granted</th><th>Expires</th><th></th></tr></thead><tbody id="tokens"></tbody></table>
  </section>
  <section id="calls-section">
    <h2>Recent tool calls</h2>
    <input id="calls-filter" type="search" placeholder="Filter by user, name or outcome" aria-label="Filter tool calls">
    <table><thead><tr><th>Time</th><th>User</th><th>Client</th><th>Method</th><th>Name</th><th>Outcome</th><th>Duration</th></tr></thead><tbody id="calls"></tbody></table>
  </section>
  <section id="audit-section">
    <h2>Recent audit events</h2>
    <table><thead><tr><th>Time</th><th>Event</th><th>User</th><th>Client</th><th>IP</th><th>Details</th></tr></thead><tbody id="audit"></tbody></table>
  </section>
</section>
</main>
</body>
</html>
`;

export const ADMIN_PAGE_CSS = `:root{color-scheme:light;--fg:#1d2330;--muted:#5d6778;--line:#dfe3ea;--bg:#f5f7fa;--card:#fff;--ok:#1a7f37;--bad:#c62828;--accent:#3451b2}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;gap:1rem;align-items:baseline;padding:.8rem 1.5rem;background:var(--card);border-bottom:1px solid var(--line)}
header h1{font-size:1.15rem;margin:0;flex:0 0 auto}
#whoami{flex:1 1 auto}
main{padding:1rem 1.5rem;max-width:1400px}
h2{font-size:1rem;margin:1.4rem 0 .5rem}
h3{font-size:.78rem;font-weight:600;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);margin:0 0 .3rem}
.muted{color:var(--muted)}
.small{font-size:.8rem;word-break:break-all}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:.8rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.8rem 1rem}
.card p{margin:.15rem 0}
.big{font-size:1.7rem;font-weight:600;margin:.1rem 0}
.unit{font-size:.8rem;color:var(--muted);font-weight:400}
.healthy,.closed{color:var(--ok)}
.unhealthy,.open{color:var(--bad)}
.half_open{color:#b26a00}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.78rem;color:var(--muted);font-weight:600;background:#fafbfc}
td.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8rem;word-break:break-all}
tbody tr:last-child td{border-bottom:0}
td.empty{color:var(--muted);text-align:center}
tr.children>td{padding:0 .6rem .6rem 2rem;background:#fafbfc}
tr.children table{font-size:.85rem}
tr.children caption{text-align:left;font-size:.78rem;color:var(--muted);padding:.3rem 0}
#funnel{list-style:none;margin:0;padding:0;display:grid;gap:.3rem;max-width:760px}
#funnel li{display:grid;grid-template-columns:11rem 1fr 4rem;gap:.6rem;align-items:center}
#funnel progress{width:100%;height:.9rem}
#funnel .count{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
input[type=search],input[type=password]{padding:.35rem .5rem;border:1px solid var(--line);border-radius:6px;font:inherit;min-width:18rem}
#search,#calls-filter{margin:0 0 .5rem}
.outcome-error,.outcome-denied{color:var(--bad)}
.outcome-tool_error{color:#b26a00}
td.actions,td.time{white-space:nowrap}
td.actions button+button{margin-left:.3rem}
button{font:inherit;padding:.25rem .7rem;border-radius:6px;border:1px solid var(--line);background:#fff;cursor:pointer}
button.danger{color:var(--bad);border-color:#e9b4b4}
button.armed{background:var(--bad);color:#fff}
button:disabled{opacity:.5;cursor:default}
#login{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:1rem 1.2rem;max-width:36rem}
#token-form{display:flex;gap:.5rem;align-items:center;flex-wrap:wrap}
#error{background:#fdecea;color:var(--bad);border:1px solid #f5c2c0;border-radius:8px;padding:.6rem .8rem;margin-bottom:.8rem}
[hidden]{display:none!important}
`;

export const ADMIN_PAGE_JS = `'use strict';
(function () {
  var TOKEN_KEY = 'mcp-oidc-proxy-admin-token';
  var STATUS_EVERY_MS = 2000;
  var TABLES_EVERY_MS = 10000;
  var FUNNEL_LABELS = {
    challenge: '401 challenge',
    client_registered: 'Client registered',
    consent_granted: 'Consent granted',
    login_success: 'Signed in',
    token_issued: 'Token issued',
    mcp_first_call: 'First MCP call'
  };
  var token = sessionStorage.getItem(TOKEN_KEY) || '';
  var timers = [];
  var identity = true;
  var searchTimer;
  /** client_id -> name, from the clients table: audit events name clients by id. */
  var clientNames = {};
  /** The MCP calls of the last refresh, newest first: the filter box narrows them here. */
  var recentCalls = [];

  function $(id) { return document.getElementById(id); }
  function setText(id, value) { $(id).textContent = value === null || value === undefined ? '–' : String(value); }
  function cell(value, className) {
    var td = document.createElement('td');
    td.textContent = value === null || value === undefined || value === '' ? '–' : String(value);
    if (className) td.className = className;
    return td;
  }
  function when(iso) {
    if (!iso) return '–';
    var d = new Date(iso);
    var pad = function (n) { return String(n).padStart(2, '0'); };
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function duration(seconds) {
    if (seconds < 60) return seconds + ' s';
    if (seconds < 3600) return Math.floor(seconds / 60) + ' min';
    if (seconds < 86400) return Math.floor(seconds / 3600) + ' h ' + Math.floor((seconds % 3600) / 60) + ' min';
    return Math.floor(seconds / 86400) + ' d ' + Math.floor((seconds % 86400) / 3600) + ' h';
  }
  function ms(value) { return value === null || value === undefined ? '–' : value + ' ms'; }
  function mib(bytes) { return (bytes / 1048576).toFixed(0) + ' MiB'; }

  function AuthProblem(status, body) { this.status = status; this.body = body; }

  function api(path, method) {
    var headers = { accept: 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    return fetch(path, { method: method || 'GET', headers: headers, credentials: 'same-origin', cache: 'no-store' })
      .then(function (res) {
        return res.json().catch(function () { return null; }).then(function (body) {
          if (res.status === 401 || res.status === 403 || res.status === 429) throw new AuthProblem(res.status, body);
          if (!res.ok) throw new Error((body && body.error_description) || ('HTTP ' + res.status));
          return body;
        });
      });
  }

  function stop() { timers.forEach(clearInterval); timers = []; }

  function showError(err) {
    if (err instanceof AuthProblem) return showLogin(err);
    var box = $('error');
    box.textContent = err && err.message ? err.message : String(err);
    box.hidden = false;
  }
  function clearError() { $('error').hidden = true; }

  function showLogin(problem) {
    stop();
    $('dashboard').hidden = true;
    $('login').hidden = false;
    var reason = '';
    if (problem) {
      var description = problem.body && problem.body.error_description ? problem.body.error_description : '';
      if (problem.status === 401 && token) reason = 'The admin token was refused.';
      else if (problem.status === 401) reason = 'Sign in to see this page.';
      else reason = description || ('HTTP ' + problem.status);
      if (problem.status === 401 && token) { token = ''; sessionStorage.removeItem(TOKEN_KEY); }
    }
    $('login-reason').textContent = reason;
    $('forget-token').hidden = !token;
  }

  function renderStatus(s) {
    identity = s.auth_mode !== 'bypass';
    document.querySelectorAll('.identity').forEach(function (node) { node.hidden = !identity; });
    if (s.caller) {
      $('whoami').textContent = s.caller.kind === 'token' ? 'signed in with the admin token' : 'signed in as ' + (s.caller.email || s.caller.subject);
    }
    setText('rps', s.rates.requests_per_second === null ? '–' : s.rates.requests_per_second.toFixed(2));
    setText('requests-total', s.requests.total);
    setText('requests-errors', (s.requests.by_status_class['5xx'] || 0));
    setText('p50', ms(s.rates.p50_ms !== null ? s.rates.p50_ms : s.requests.latency.p50_ms));
    setText('p99', ms(s.rates.p99_ms !== null ? s.rates.p99_ms : s.requests.latency.p99_ms));
    setText('sessions-active', s.store ? s.store.active_sessions : '–');
    setText('store-kind', s.store ? s.store.kind : 'none');
    var storeStatus = $('store-status');
    storeStatus.textContent = s.store ? s.store.status : 'n/a';
    storeStatus.className = s.store ? s.store.status : '';
    setText('streams-total', s.streams.sse + s.streams.websocket);
    setText('streams-sse', s.streams.sse);
    setText('streams-ws', s.streams.websocket);
    var upstream = $('upstream-status');
    upstream.textContent = s.upstream.status;
    upstream.className = 'big ' + s.upstream.status;
    upstream.title = s.upstream.error || '';
    var breaker = $('breaker');
    breaker.textContent = s.upstream.breaker.replace('_', '-');
    breaker.className = s.upstream.breaker;
    setText('upstream-target', s.upstream.target);
    setText('uptime', duration(s.process.uptime_seconds));
    setText('version', s.process.version);
    setText('memory', mib(s.process.memory.rss_bytes));
    var idp = $('idp-status');
    idp.textContent = s.identity_provider ? s.identity_provider.status : 'n/a';
    idp.className = s.identity_provider ? s.identity_provider.status : '';
    renderServers(s.servers);
    renderFunnel(s.auth.funnel);
    renderAudit(s.recent_audit);
  }

  var CHILD_COLUMNS = ['PID', 'User', 'Sessions', 'Age', 'Idle', 'In flight', 'Streams'];
  /** Each server, and below a stdio server the table of its child processes. */
  function renderServers(servers) {
    var body = $('servers');
    var rows = [];
    servers.forEach(function (s) {
      var tr = document.createElement('tr');
      tr.dataset.server = s.name;
      var status = cell(s.status, s.status);
      status.title = s.error || '';
      tr.append(cell(s.name), cell(s.path, 'id'), cell(s.target, 'id'), status, cell(s.breaker.replace('_', '-'), s.breaker));
      rows.push(tr);
      if (s.children) rows.push(childrenRow(s));
    });
    body.replaceChildren.apply(body, rows);
  }

  function childrenRow(server) {
    var tr = document.createElement('tr');
    tr.className = 'children';
    tr.dataset.childrenOf = server.name;
    var td = document.createElement('td');
    td.colSpan = 5;
    var table = document.createElement('table');
    var caption = document.createElement('caption');
    caption.textContent = 'stdio processes: ' + server.children.length;
    var head = document.createElement('thead');
    var headRow = document.createElement('tr');
    headRow.append.apply(headRow, CHILD_COLUMNS.map(function (name) {
      var th = document.createElement('th');
      th.textContent = name;
      return th;
    }));
    head.append(headRow);
    var rows = document.createElement('tbody');
    fillBody(rows, server.children, CHILD_COLUMNS.length, function (c) {
      var sessions = cell(c.sessions.length);
      sessions.title = c.sessions.join(' ');
      return [cell(c.pid, 'id'), cell(c.user), sessions, cell(duration(c.age_seconds)), cell(duration(c.idle_seconds)),
        cell(c.in_flight), cell(c.open_streams)];
    }, 'no process running');
    table.append(caption, head, rows);
    td.append(table);
    tr.append(td);
    return tr;
  }

  function renderFunnel(steps) {
    var list = $('funnel');
    var max = steps.reduce(function (m, step) { return Math.max(m, step.count); }, 1);
    list.replaceChildren.apply(list, steps.map(function (step) {
      var li = document.createElement('li');
      li.dataset.step = step.step;
      var label = document.createElement('span');
      label.textContent = FUNNEL_LABELS[step.step] || step.step;
      var bar = document.createElement('progress');
      bar.max = max;
      bar.value = step.count;
      var count = document.createElement('span');
      count.className = 'count';
      count.textContent = String(step.count);
      li.append(label, bar, count);
      return li;
    }));
  }

  var AUDIT_SHOWN = { time: 1, event: 1, sub: 1, email: 1, client_id: 1, client_name: 1, ip: 1 };
  function renderAudit(events) {
    fill('audit', events, 6, function (e) {
      var details = Object.keys(e).filter(function (k) { return !AUDIT_SHOWN[k]; })
        .map(function (k) { return k + '=' + e[k]; }).join(' ');
      var clientName = e.client_name || clientNames[e.client_id];
      return [cell(when(e.time), 'time'), cell(e.event), cell(e.email || e.sub), clientName ? cell(clientName) : cell(e.client_id, 'id'), cell(e.ip), cell(details)];
    });
  }

  function renderCalls() {
    var filter = $('calls-filter').value.trim().toLowerCase();
    var shown = !filter ? recentCalls : recentCalls.filter(function (c) {
      return [c.sub, c.name, c.outcome].some(function (v) { return typeof v === 'string' && v.toLowerCase().indexOf(filter) !== -1; });
    });
    fill('calls', shown, 7, function (c) {
      var clientName = clientNames[c.client_id];
      return [cell(when(c.time), 'time'), cell(c.sub), clientName ? cell(clientName) : cell(c.client_id, 'id'), cell(c.method),
        cell(c.name), cell(c.outcome, 'outcome-' + c.outcome), cell(ms(c.duration_ms))];
    }, filter && recentCalls.length ? 'no call matches' : undefined);
  }

  function fill(id, rows, columns, toCells, emptyText) { fillBody($(id), rows, columns, toCells, emptyText); }
  function fillBody(body, rows, columns, toCells, emptyText) {
    if (!rows.length) {
      var tr = document.createElement('tr');
      var td = cell(emptyText || 'nothing yet', 'empty');
      td.colSpan = columns;
      tr.append(td);
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren.apply(body, rows.map(function (row) {
      var tr = document.createElement('tr');
      tr.append.apply(tr, toCells(row));
      return tr;
    }));
  }

  /** A button that acts on its second click within four seconds: no dialogs needed. */
  function revokeButton(label, kind, action) {
    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'danger';
    button.textContent = label;
    button.dataset.action = kind;
    var armed = false;
    var disarm;
    button.addEventListener('click', function () {
      if (!armed) {
        armed = true;
        button.textContent = 'Confirm';
        button.classList.add('armed');
        disarm = setTimeout(function () { armed = false; button.textContent = label; button.classList.remove('armed'); }, 4000);
        return;
      }
      clearTimeout(disarm);
      button.disabled = true;
      action().then(function () { clearError(); return Promise.all([refreshTables(), refreshStatus()]); }).catch(showError);
    });
    return button;
  }

  function actions() {
    var td = document.createElement('td');
    td.className = 'actions';
    td.append.apply(td, arguments);
    return td;
  }

  function query() {
    var q = $('search').value.trim();
    return q ? '?q=' + encodeURIComponent(q) : '';
  }

  function refreshTables() {
    return Promise.all([api('/admin/api/calls?limit=1000'), refreshIdentityTables()]).then(function (results) {
      recentCalls = results[0].calls;
      renderCalls();
    });
  }

  function refreshIdentityTables() {
    if (!identity) return Promise.resolve();
    var q = query();
    return Promise.all([api('/admin/api/sessions' + q), api('/admin/api/clients' + q), api('/admin/api/tokens' + q)])
      .then(function (lists) {
        fill('sessions', lists[0].sessions, 6, function (s) {
          var who = document.createElement('td');
          who.textContent = s.name || s.username || s.subject;
          who.title = s.subject;
          return [who, cell(s.email), cell(s.groups.join(', ')), cell(when(s.created_at)), cell(when(s.last_seen_at)),
            actions(
              revokeButton('Sign out', 'revoke-session', function () { return api('/admin/api/sessions/' + encodeURIComponent(s.id), 'DELETE'); }),
              revokeButton('Revoke user', 'revoke-user', function () { return api('/admin/api/users?subject=' + encodeURIComponent(s.subject), 'DELETE'); })
            )];
        });
        lists[1].clients.forEach(function (c) { clientNames[c.client_id] = c.client_name; });
        fill('clients', lists[1].clients, 7, function (c) {
          var action = c.deletable
            ? actions(revokeButton('Revoke', 'revoke-client', function () { return api('/admin/api/clients?client_id=' + encodeURIComponent(c.client_id), 'DELETE'); }))
            : cell('configured', 'muted');
          return [cell(c.client_name), cell(c.client_id, 'id'), cell(c.source), cell(c.active_grants), cell(c.users), cell(when(c.created_at)), action];
        });
        fill('tokens', lists[2].tokens, 6, function (t) {
          return [cell(t.email || t.subject), cell(t.client_name || t.client_id), cell(t.scope), cell(when(t.created_at)), cell(when(t.expires_at)),
            actions(revokeButton('Revoke', 'revoke-grant', function () { return api('/admin/api/tokens/' + encodeURIComponent(t.id), 'DELETE'); }))];
        });
      });
  }

  function refreshStatus() {
    return api('/admin/api/status').then(function (s) { clearError(); renderStatus(s); });
  }

  function start() {
    stop();
    refreshStatus().then(function () {
      $('login').hidden = true;
      $('dashboard').hidden = false;
      $('forget-token').hidden = !token;
      timers.push(setInterval(function () { refreshStatus().catch(showError); }, STATUS_EVERY_MS));
      timers.push(setInterval(function () { refreshTables().catch(showError); }, TABLES_EVERY_MS));
      return refreshTables();
    }).catch(showError);
  }

  $('token-form').addEventListener('submit', function (event) {
    event.preventDefault();
    token = $('token-input').value.trim();
    $('token-input').value = '';
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
  $('forget-token').addEventListener('click', function () {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    $('whoami').textContent = '';
    showLogin(null);
  });
  $('search').addEventListener('input', function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () { refreshTables().catch(showError); }, 250);
  });
  $('calls-filter').addEventListener('input', renderCalls);
  start();
})();
`;
