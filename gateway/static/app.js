// Console entry: sign-in, tabs, the live stream, and the shared state every view reads.
import { api, auth, clear, h, toast } from './util.js';
import { renderBoard } from './board.js';
import { renderIssue } from './issue.js';
import { renderPublic } from './public.js';
import { renderSignoff } from './signoff.js';
import { renderAudit, renderOps, renderRoster } from './admin.js';

export const state = {
  me: null, meta: null, chains: null, event: null, ops: null,
  selected: sessionStorage.getItem('gw.selected') || null,
  view: 'board',
  can(scope) { return Boolean(this.me && this.me.can[scope]); },
};

const views = {
  board: () => renderBoard(byId('view-board'), state, app),
  issue: () => renderIssue(byId('view-issue'), state, app),
  public: () => renderPublic(byId('view-public'), state, app),
  signoff: () => renderSignoff(byId('view-signoff'), state, app),
  ops: () => renderOps(byId('view-ops'), state),
  roster: () => renderRoster(byId('view-roster'), state),
  audit: () => renderAudit(byId('view-audit'), state),
};
// views redrawn by each stream message; the others draw on opening (their forms keep input)
const LIVE = { chains: ['board'], event: ['board'], ops: ['ops'], meta: ['board'] };

function byId(id) { return document.getElementById(id); }

export const app = {
  select(eventId) {
    state.selected = eventId;
    state.event = null;
    if (eventId) sessionStorage.setItem('gw.selected', eventId);
    else sessionStorage.removeItem('gw.selected');
    app.show('board');
    connect();
  },
  show(view) {
    if (!views[view]) view = 'board';
    state.view = view;
    for (const s of document.querySelectorAll('.view')) s.hidden = s.dataset.view !== view;
    for (const t of document.querySelectorAll('.tab')) t.setAttribute('aria-current', t.dataset.view === view ? 'page' : 'false');
    const hash = view === 'board' ? '' : `#${view}`;
    if (location.hash.split('/')[0] !== hash) history.replaceState(null, '', hash || location.pathname);
    views[view]();
  },
  redraw(view) { if (state.view === view) views[view](); },
};

// ---- live stream (EventSource cannot set headers: the token goes in ?token=, see /v1/stream)
let source = null;
let retryTimer = null;

function setLive(ok, text) {
  const el = byId('live');
  el.textContent = text;
  el.className = ok ? 'live live-on' : 'live live-off';
}

function connect() {
  if (source) source.close();
  clearTimeout(retryTimer);
  if (!state.can('events:read')) { setLive(false, '○ 无实时数据权限'); return; }
  const q = new URLSearchParams({ token: auth.token });
  if (state.selected) q.set('event', state.selected);
  const es = new EventSource(`/v1/stream?${q}`);
  source = es;
  es.onopen = () => setLive(true, '● 实时更新');
  es.onerror = () => {
    if (source !== es) return;
    setLive(false, '○ 连接中断，正在重连…');
    if (es.readyState === EventSource.CLOSED) {
      // a refused stream (the event vanished, the token was revoked): check, then retry
      retryTimer = setTimeout(recover, 3000);
    }
  };
  for (const name of ['meta', 'chains', 'event', 'ops']) {
    es.addEventListener(name, (e) => {
      if (source !== es) return;
      state[name] = JSON.parse(e.data);
      for (const v of LIVE[name]) app.redraw(v);
    });
  }
}

async function recover() {
  try {
    state.me = await api('GET', '/v1/me');
  } catch {
    return;  // 401 signs out through auth.onUnauthorized; anything else: the next error retries
  }
  if (state.selected) {
    try { await api('GET', `/v1/events/${encodeURIComponent(state.selected)}`); } catch { state.selected = null; }
  }
  connect();
}

// ---- sign-in
async function signIn(token) {
  auth.token = token;
  state.me = await api('GET', '/v1/me');
  byId('signin').hidden = true;
  byId('app').hidden = false;
  byId('who').hidden = false;
  clear(byId('principal'), h('span', { class: 'muted' }, '当前用户 '), h('strong', {}, state.me.principal));
  for (const t of document.querySelectorAll('.tab')) {
    const scope = t.dataset.scope;
    t.hidden = Boolean(scope) && !state.can(scope);
  }
  connect();
  const [view] = location.hash.slice(1).split('/');
  app.show(view || 'board');
}

function signOut(message) {
  auth.token = '';
  if (source) source.close();
  source = null;
  state.me = null;
  state.event = null;
  state.chains = null;
  byId('app').hidden = true;
  byId('who').hidden = true;
  byId('signin').hidden = false;
  const err = byId('signin-error');
  err.hidden = !message;
  err.textContent = message || '';
  byId('token').focus();
}

auth.onUnauthorized = () => signOut('令牌无效或已失效，请重新登录。');

function init() {
  byId('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = byId('token').value.trim();
    byId('token').value = '';
    try {
      await signIn(token);
    } catch (err) {
      signOut(err.status === 401 ? '令牌无效，请检查后重试。' : `无法登录：${err.message}`);
    }
  });
  byId('signout').addEventListener('click', () => { signOut(''); toast('已退出登录'); });
  for (const t of document.querySelectorAll('.tab')) t.addEventListener('click', () => app.show(t.dataset.view));
  window.addEventListener('hashchange', () => { if (state.me) app.show(location.hash.slice(1).split('/')[0]); });
  if (auth.token) signIn(auth.token).catch(() => signOut('')); else signOut('');
}

init();
