// Sign-off (签发): warnings held until an HQ leader signs them. Drafts awaiting a signature come
// first, each with exactly what every unit will receive; a listed signer (not the submitter) signs
// or rejects; the submitter sees who has been asked. The server enforces every rule.
import { LEVELS, TYPES, alertBox, api, clear, h, toast, when } from './util.js';

export const SIGNOFF_STATE = {
  pending: '待签发', signed: '已签发', released: '来源直接发布', rejected: '已驳回', expired: '已过期', cancelled: '已取消',
};

let cache = { at: 0, rows: null };
let problem = null;

export async function pendingDrafts(force) {
  if (!force && cache.rows && Date.now() - cache.at < 3000) return cache.rows;
  const body = await api('GET', '/v1/signoffs?state=pending&limit=50');
  cache = { at: Date.now(), rows: body.signoffs };
  return cache.rows;
}

// The board's banner: drafts awaiting sign-off, before the active chains.
export function pendingBanner(state, app) {
  const box = h('div', { class: 'signoff-banner', id: 'signoff-banner' });
  pendingDrafts(false).then((rows) => {
    if (!rows.length) return;
    clear(box, h('div', { class: 'alert alert-warn' },
      h('strong', {}, `待签发的预警（${rows.length}）：`),
      rows.map((r) => h('a', { href: `#signoff/${r.event_id}`, class: 'signoff-link', 'data-event': r.event_id,
        onclick: (e) => { e.preventDefault(); location.hash = `#signoff/${r.event_id}`; app.show('signoff'); } },
      `${LEVELS[r.level]?.name || ''}${TYPES[r.type] || r.type} · ${r.submitter}`))));
  }).catch(() => {});
  return box;
}

export async function renderSignoff(root, state, app) {
  const [, wanted] = location.hash.slice(1).split('/');
  let rows = [];
  let one = null;
  try {
    rows = await pendingDrafts(true);
    if (wanted && !rows.some((r) => r.event_id === wanted)) {
      const all = await api('GET', '/v1/signoffs?limit=200');
      one = all.signoffs.find((r) => r.event_id === wanted) || null;
    }
  } catch (err) {
    problem = err;
  }
  const list = one ? [one, ...rows] : rows;
  clear(root, h('div', { class: 'signoff' },
    h('div', { class: 'rule' }, h('h2', {}, '签发'),
      h('p', {}, '县指挥部办公室发布预警须“经县指挥部领导批准同意”：预警提交后先保存、不发送，由',
        h('strong', {}, '另一位'), '列入签发名单的县指挥部领导签发后立即发出。提交人不能签发自己的预警；红色预警须由指挥长签发。')),
    problem ? alertBox(problem) : null,
    list.length ? list.map((r) => card(r, state, app, r.event_id === wanted))
      : h('p', { class: 'muted', id: 'no-drafts' }, '当前没有待签发的预警。')));
  problem = null;
  watch(root);
}

// While the view is open, who has been asked and each draft's state follow the server (signers are
// notified by a job just after the draft is saved); updated in place so a typed 文号 or reason stays.
let watcher = null;
function watch(root) {
  if (watcher) clearInterval(watcher);
  watcher = setInterval(async () => {
    if (root.closest('.view')?.hidden ?? root.hidden) { clearInterval(watcher); watcher = null; return; }
    let rows;
    try {
      rows = (await api('GET', '/v1/signoffs?limit=200')).signoffs;
    } catch {
      return;  // the next tick tries again; a failing server is shown by the stream's own banner
    }
    for (const r of rows) {
      const el = document.getElementById(`signoff-${r.event_id}`);
      if (!el) continue;
      el.dataset.state = r.state;
      el.querySelector('[data-role=state]').textContent = SIGNOFF_STATE[r.state] || r.state;
      el.querySelector('[data-role=asked]').textContent = (r.asked || []).join('、') || '尚未通知';
    }
  }, 2000);
}

function card(r, state, app, focus) {
  const mine = state.me && r.submitter === state.me.principal;
  const listed = !r.signers.length || (state.me && r.signers.includes(state.me.principal));
  const pending = r.state === 'pending';
  const ref = h('input', { id: `ref-${r.event_id}`, maxlength: '100', placeholder: '文号（可选），如 泽污应指〔2026〕1号' });
  const reason = h('input', { id: `reason-${r.event_id}`, maxlength: '500', placeholder: '驳回理由（驳回时必填）' });
  const decide = async (verb) => {
    if (verb === 'reject' && !reason.value.trim()) { reason.setCustomValidity('请填写驳回理由'); reason.reportValidity(); return; }
    try {
      await api('POST', `/v1/events/${encodeURIComponent(r.event_id)}/${verb}`,
        verb === 'sign' ? (ref.value.trim() ? { ref: ref.value.trim() } : {}) : { reason: reason.value.trim() });
      toast(verb === 'sign' ? '已签发，预警正在发出' : '已驳回，预警不会发出', 'ok');
      cache = { at: 0, rows: null };
      if (verb === 'sign') { app.select(r.event_id); return; }
    } catch (err) {
      problem = err;
    }
    renderSignoff(document.getElementById('view-signoff'), state, app);
  };
  const byUnit = new Map();
  for (const m of r.messages || []) {
    const k = `${m.channel}\u0000${m.text}`;
    if (!byUnit.has(k)) byUnit.set(k, { ...m, units: [] });
    byUnit.get(k).units.push(m.unit_name);
  }
  return h('article', { class: `card draft lv-${r.level || 'none'}`, id: `signoff-${r.event_id}`, 'data-event': r.event_id,
    'data-state': r.state, 'aria-current': focus ? 'true' : 'false' },
  h('h3', {}, `${LEVELS[r.level]?.name || ''}${TYPES[r.type] || r.type}`, r.headline ? ` · ${r.headline}` : '',
    h('span', { class: 'tag', 'data-role': 'state' }, SIGNOFF_STATE[r.state] || r.state)),
  h('dl', { class: 'kv' },
    h('dt', {}, '事件'), h('dd', {}, r.event_id),
    h('dt', {}, '提交人'), h('dd', {}, r.submitter, mine ? '（您本人）' : ''),
    h('dt', {}, '可签发'), h('dd', {}, r.signers.join('、') || '任一有签发权限的领导'),
    h('dt', {}, '已通知'), h('dd', { 'data-role': 'asked' }, (r.asked || []).join('、') || '尚未通知'),
    h('dt', {}, '提交时间'), h('dd', {}, when(r.created_at)),
    h('dt', {}, '草稿有效至'), h('dd', {}, when(r.expires_at)),
    r.decided_by ? [h('dt', {}, '处理人'), h('dd', {}, r.decided_by, r.ref ? `（${r.ref}）` : '')] : null,
    r.reason ? [h('dt', {}, '驳回理由'), h('dd', {}, r.reason)] : null),
  pending && state.can('events:sign') ? h('div', { class: 'decide' },
    mine ? h('p', { class: 'alert alert-warn' }, '⚠ 这是您本人提交的预警，须由另一位领导签发，服务器会拒绝您的签发。') : null,
    !listed ? h('p', { class: 'alert alert-warn' }, `⚠ 此级别须由 ${r.signers.join('、')} 签发。`) : null,
    h('div', { class: 'actions' }, ref,
      h('button', { type: 'button', class: 'btn btn-primary', 'data-role': 'sign', onclick: () => decide('sign') }, '✓ 签发并发出'),
      reason,
      h('button', { type: 'button', class: 'btn btn-danger', 'data-role': 'reject', onclick: () => decide('reject') }, '✗ 驳回'))) : null,
  byUnit.size ? h('details', { open: focus ? true : null }, h('summary', {}, `各单位将收到的内容（${(r.messages || []).length} 条）`),
    h('ul', { class: 'previews' }, [...byUnit.values()].map((m) => h('li', {},
      h('strong', {}, `${m.units.join('、')}（${m.channel}）`), h('blockquote', {}, m.text))))) : null);
}
