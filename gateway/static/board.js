// The live board: active warning chains, and the selected event's units x channels matrix.
import {
  CHANNELS, DELIVERY, ESCALATION, LEVELS, STATE, STATUS, TYPES, VIA,
  alertBox, api, auth, clear, clock, h, levelBadge, modal, toast, when,
} from './util.js';
import { pendingBanner } from './signoff.js';

const REASONS = {
  rate_limited: '限流', server_error: '服务端错误', timeout: '超时', connection: '无法接通',
  invalid_recipient: '号码无效', auth: '认证失败', client_error: '请求错误', other: '其他',
  cancelled: '已取消', expired: '超出时限', undelivered: '未送达', 'no-answer': '无人接听', busy: '占线',
};

// A delivery caused by another one: escalations and public messages name their cause in
// cause_id with a prefix; any other cause_id is a fallback (SMS failed -> voice, next contact).
export function kindOf(d) {
  const c = d.cause_id || '';
  if (!c) return null;
  if (c.startsWith('esc:')) return 'escalation';
  if (c.startsWith('pm_')) return 'public';
  return 'fallback';
}
const KIND_LABEL = { fallback: '↪ 补发', escalation: '⇈ 催办', public: '◉ 公众' };

export function renderBoard(root, state, app) {
  if (!state.can('events:read')) {
    clear(root, h('p', { class: 'alert alert-warn' }, '此令牌没有查看预警（events:read）的权限，请使用有相应权限的令牌。'));
    return;
  }
  clear(root, pendingBanner(state, app), h('div', { class: 'board' },
    h('aside', { class: 'chains', 'aria-label': '预警' }, chainList(state, app)),
    h('div', { class: 'detail', id: 'detail' }, detail(state, app))));
}

function chainList(state, app) {
  if (!state.chains) return h('p', { class: 'muted' }, '正在加载…');
  const active = state.chains.active;
  const recent = state.chains.recent.filter((e) => e.state !== 'active');
  return [
    h('h2', {}, `生效中的预警（${active.length}）`),
    active.length ? h('ul', { class: 'chain-list', id: 'active-chains' }, active.map((e) => chainCard(e, state, app)))
      : h('p', { class: 'muted' }, '当前没有生效中的预警。'),
    recent.length ? h('details', { class: 'recent' }, h('summary', {}, `最近结束或被替代（${recent.length}）`),
      h('ul', { class: 'chain-list' }, recent.map((e) => chainCard(e, state, app)))) : null,
  ];
}

function chainCard(e, state, app) {
  const c = e.confirmed || { required: 0, acked: 0 };
  return h('li', {},
    h('button', {
      type: 'button', class: `chain lv-${e.level || 'none'}`, 'data-event': e.id,
      'aria-current': state.selected === e.id ? 'true' : 'false', onclick: () => app.select(e.id),
    },
    h('span', { class: 'chain-strip', 'aria-hidden': 'true' }),
    h('span', { class: 'chain-body' },
      h('span', { class: 'chain-title' }, levelBadge(e.level), ' ', TYPES[e.type] || e.type,
        e.status !== 'actual' ? h('span', { class: 'tag tag-drill' }, STATUS[e.status]) : null,
        e.state !== 'active' ? h('span', { class: 'tag' }, STATE[e.state] || e.state) : null),
      e.headline ? h('span', { class: 'chain-headline' }, e.headline) : null,
      h('span', { class: 'chain-meta' }, `自 ${when(e.valid_from || e.accepted_at)}`,
        ` · 至 ${e.valid_until ? when(e.valid_until) : '另行通知'}`),
      c.required ? h('span', { class: `chain-meta ${c.acked < c.required ? 'chain-open' : 'chain-done'}` },
        c.acked < c.required ? `✗ ${c.required - c.acked} 个单位未签收 · ` : '✔ ', `${c.acked} / ${c.required} 已签收`) : null)));
}

function detail(state, app) {
  if (!state.selected) return h('div', { class: 'empty' }, h('p', {}, '请在左侧选择一条预警，查看各单位的送达与签收情况。'));
  const ev = state.event;
  if (!ev || ev.id !== state.selected) return h('p', { class: 'muted' }, '正在加载事件…');
  const meta = state.meta || { roles: {}, groups: {}, channels: [], escalation: [] };
  const required = ev.units.filter((u) => u.ack_required);
  const acked = required.filter((u) => u.acked_at);
  const by = ev.summary.by_status || {};
  const fallbacks = ev.deliveries.filter((d) => kindOf(d) === 'fallback').length;
  const escalated = ev.units.filter((u) => u.escalation_step > 0).length;
  const pct = required.length ? Math.round((100 * acked.length) / required.length) : 100;
  return [
    h('header', { class: `event-head lv-${ev.level || 'none'}` },
      h('div', { class: 'event-title' }, levelBadge(ev.level), h('span', { class: 'event-type' }, TYPES[ev.type] || ev.type),
        ev.status !== 'actual' ? h('span', { class: 'tag tag-drill' }, `【${STATUS[ev.status]}】`) : null,
        h('span', { class: `tag state-${ev.state}`, id: 'event-state' }, STATE[ev.state] || ev.state)),
      ev.headline ? h('p', { class: 'event-headline' }, ev.headline) : null,
      h('dl', { class: 'facts' },
        fact('生效', when(ev.valid_from || ev.accepted_at)), fact('解除', ev.valid_until ? when(ev.valid_until) : '另行通知'),
        fact('受理', when(ev.accepted_at)), fact('提交人', ev.submitted_by),
        fact('编号', ev.id), ev.supersedes ? fact('替代', ev.supersedes) : null)),
    h('div', { class: 'stats' },
      h('div', { class: 'stat stat-ack' },
        h('span', { class: 'stat-big', id: 'ack-count' }, `${acked.length} / ${required.length} 已签收`),
        h('span', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(pct),
          'aria-label': '签收进度' }, h('span', { class: `bar-fill w${Math.round(pct / 5) * 5}` }))),
      h('ul', { class: 'stat-list', id: 'delivery-counts' },
        ['delivered', 'sent', 'pending', 'leased', 'failed', 'cancelled', 'expired'].filter((s) => by[s]).map((s) =>
          h('li', { class: `ds ds-${s}` }, `${DELIVERY[s].icon} ${DELIVERY[s].text} ${by[s]}`)),
        fallbacks ? h('li', { class: 'ds ds-fallback' }, `↪ 补发 ${fallbacks}`) : null,
        escalated ? h('li', { class: 'ds ds-escalation' }, `⇈ 已催办 ${escalated} 个单位`) : null)),
    actions(ev, state, app),
    publicSummary(ev),
    reportsPanel(ev),
    matrix(ev, meta, state),
  ];
}

// ---- daily reports (信息报送), the summary evaluation and the office's documents
function reportsPanel(ev) {
  const id = encodeURIComponent(ev.id);
  const days = h('div', { class: 'report-days' }, h('p', { class: 'muted' }, '正在加载报送情况…'));
  const box = h('section', { class: 'reports', id: 'reports-panel' },
    h('h3', {}, '信息报送与总结评估'),
    h('div', { class: 'actions', id: 'after-action-links' }, '总结评估报告：',
      docButton(`/v1/events/${id}/after-action?format=pdf`, `after-action-${ev.chain_id}.pdf`, 'PDF'),
      docButton(`/v1/events/${id}/after-action?format=docx`, `after-action-${ev.chain_id}.docx`, 'Word'),
      docButton(`/v1/events/${id}/after-action?format=html`, `after-action-${ev.chain_id}.html`, '网页')),
    days);
  loadReports(ev, days);
  return box;
}

async function loadReports(ev, el) {
  try {
    const r = await api('GET', `/v1/events/${encodeURIComponent(ev.id)}/reports`);
    if (!r.requests.length) { clear(el, h('p', { class: 'muted' }, '本预警尚无报送要求（每日12时发出，14时截止）。')); return; }
    clear(el, h('table', { class: 'report-table' },
      h('thead', {}, h('tr', {}, h('th', {}, '报送'), h('th', {}, '截止'), h('th', {}, '已报'), h('th', {}, '未报单位'), h('th', {}, '日报'))),
      h('tbody', {}, r.requests.map((q) => h('tr', { 'data-request': q.id },
        h('td', {}, q.kind === 'daily' ? `${q.period} 信息报送` : '总结评估'),
        h('td', {}, when(q.due_at)),
        h('td', {}, `${q.reported} / ${q.expected}`),
        h('td', { class: q.missing.length ? 'chain-open' : 'chain-done' }, q.missing.map((m) => m.unit_name).join('、') || '全部已报'),
        h('td', {}, q.kind !== 'daily' ? '—' : ['pdf', 'docx', 'csv'].map((f) => docButton(
          `/v1/events/${encodeURIComponent(ev.id)}/daily-report?date=${q.period}&format=${f}`,
          `daily-report-${ev.chain_id}-${q.period}.${f}`, f === 'docx' ? 'Word' : f.toUpperCase()))))))));
  } catch (err) {
    clear(el, alertBox(err));
  }
}

function docButton(path, name, label) {
  return h('button', { type: 'button', class: 'btn btn-small', 'data-doc': path, onclick: () => download(path, name) }, label);
}

// the documents need the bearer token, so they are fetched and handed to the browser as a file
async function download(path, name) {
  try {
    const r = await fetch(path, { headers: { Authorization: `Bearer ${auth.token}` }, cache: 'no-store' });
    if (!r.ok) throw new Error(`${r.status} ${(await r.json().catch(() => null))?.error?.message || r.statusText}`);
    const url = URL.createObjectURL(await r.blob());
    const a = h('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  } catch (err) {
    toast(`文档下载失败：${err.message}`, 'error');
  }
}

function fact(k, v) { return h('div', { class: 'fact' }, h('dt', {}, k), h('dd', {}, v || '—')); }

function actions(ev, state, app) {
  const out = [];
  if (state.can('events:write') && ev.state === 'active') {
    out.push(h('button', { type: 'button', class: 'btn btn-danger', id: 'cancel-event', onclick: () => cancel(ev) },
      '⊘ 取消本事件'));
  }
  if (state.can('public:request') && ev.state === 'active' && ev.status === 'actual') {
    out.push(h('button', { type: 'button', class: 'btn', id: 'request-public',
      onclick: () => { state.pmEvent = ev.id; app.show('public'); } }, '◉ 申请发布公众信息'));
  }
  return out.length ? h('div', { class: 'actions' }, out) : null;
}

async function cancel(ev) {
  const ok = await modal('取消事件', h('p', {}, `将取消「${LEVELS[ev.level]?.name || ''}${TYPES[ev.type] || ''}」（${ev.id}）中尚未发出的全部通知，并停止催办。已送达的不受影响。`),
    [['cancel', '确认取消', 'btn-danger']]);
  if (!ok) return;
  try {
    const r = await api('POST', `/v1/events/${encodeURIComponent(ev.id)}/cancel`);
    toast(`已取消 ${r.cancelled} 条未发出的通知`, 'ok');
  } catch (err) {
    toast(alertBox(err).textContent, 'error');
  }
}

function publicSummary(ev) {
  const pub = ev.deliveries.filter((d) => kindOf(d) === 'public');
  if (!pub.length) return null;
  const byPm = new Map();
  for (const d of pub) {
    const id = d.cause_id.split(':')[0];
    if (!byPm.has(id)) byPm.set(id, []);
    byPm.get(id).push(d);
  }
  return h('div', { class: 'public-summary', id: 'public-summary' }, h('h3', {}, '◉ 已批准的公众信息'),
    h('ul', {}, [...byPm].map(([id, ds]) => {
      const done = ds.filter((d) => d.status === 'delivered').length;
      return h('li', { 'data-pm': id }, h('a', { href: `#public/${id}` }, id), `：推送 ${ds.length} 个发布渠道，已送达 ${done}`);
    })));
}

function channelOrder(ev, meta) {
  // the channels this event used; before its first delivery exists, the enabled ones
  const seen = new Set(ev.deliveries.length ? ev.deliveries.map((d) => d.channel) : meta.channels);
  const known = ['sms', 'voice', 'webhook'].filter((c) => seen.has(c));
  return [...known, ...[...seen].filter((c) => !known.includes(c)).sort()];
}

function matrix(ev, meta, state) {
  const channels = channelOrder(ev, meta);
  const byUnit = new Map();
  for (const d of ev.deliveries) {
    if (!byUnit.has(d.unit_id)) byUnit.set(d.unit_id, []);
    byUnit.get(d.unit_id).push(d);
  }
  const open = (u) => u.ack_required && !u.acked_at;
  const groups = [['unacked', '⚠ 尚未签收', ev.units.filter(open)]];
  const roleOrder = [...Object.keys(meta.roles), ''];
  const byRole = new Map();
  for (const u of ev.units.filter((x) => !open(x))) {
    const r = roleOrder.includes(u.role) ? u.role : '';
    if (!byRole.has(r)) byRole.set(r, []);
    byRole.get(r).push(u);
  }
  for (const r of roleOrder) if (byRole.has(r)) groups.push([r || 'other', meta.roles[r] || '其他单位', byRole.get(r)]);
  const cols = channels.length + 2;
  return h('div', { class: 'matrix-wrap' },
    h('h3', {}, '各单位送达与签收'),
    h('table', { class: 'matrix', id: 'matrix' },
      h('caption', { class: 'sr-only' }, '单位 × 渠道的送达状态和签收状态；未签收的单位排在最前'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, '单位'),
        channels.map((c) => h('th', { scope: 'col' }, CHANNELS[c] || c)), h('th', { scope: 'col' }, '签收'))),
      groups.filter(([, , us]) => us.length).map(([key, label, us]) => h('tbody', { 'data-group': key },
        h('tr', { class: `group-row ${key === 'unacked' ? 'group-unacked' : ''}` },
          h('th', { colspan: String(cols), scope: 'rowgroup' }, `${label}（${us.length}）`)),
        us.map((u) => unitRow(u, byUnit.get(u.unit_id) || [], channels, meta, state, ev))))));
}

function unitRow(u, ds, channels, meta, state, ev) {
  const acked = Boolean(u.acked_at);
  return h('tr', { 'data-unit': u.unit_id, 'data-acked': acked ? '1' : '0', class: u.ack_required && !acked ? 'row-open' : '' },
    h('th', { scope: 'row', class: 'unit' }, h('span', { class: 'unit-name' }, u.unit_name),
      u.groups.length ? h('span', { class: 'unit-groups' }, u.groups.map((g) => meta.groups[g] || g).join('、')) : null),
    channels.map((c) => {
      const mine = ds.filter((d) => d.channel === c);
      return h('td', { 'data-label': CHANNELS[c] || c, class: mine.length ? '' : 'cell-none' },
        mine.length ? mine.map(badge) : h('span', { class: 'muted', 'aria-label': '无' }, '—'));
    }),
    h('td', { 'data-label': '签收', class: 'ack' }, ackCell(u, ds, meta, state, ev)));
}

function badge(d) {
  const st = DELIVERY[d.status] || { icon: '?', text: d.status };
  const kind = kindOf(d);
  const why = d.reason ? REASONS[d.reason] || d.reason : '';
  const title = [d.address, `第 ${d.attempts} 次尝试`, why, d.last_error, d.sent_at ? `发出 ${clock(d.sent_at)}` : '',
    d.delivered_at ? `送达 ${clock(d.delivered_at)}` : ''].filter(Boolean).join(' · ');
  return h('span', { class: `ds ds-${d.status} ${kind ? `ds-${kind}` : ''}`, title, 'data-status': d.status, 'data-delivery': d.id },
    kind ? h('span', { class: 'ds-kind' }, KIND_LABEL[kind]) : null,
    h('span', { 'aria-hidden': 'true' }, st.icon), ` ${st.text}`,
    d.status === 'failed' && why ? h('span', { class: 'ds-why' }, why) : null);
}

function ackCell(u, ds, meta, state, ev) {
  const steps = (meta.escalation || []).slice(0, u.escalation_step).map((s) => ESCALATION[s.action] || s.action);
  const esc = u.escalation_step > 0 ? h('span', { class: 'esc' }, `⇈ 已催办 ${u.escalation_step} 步：${steps.join('、') || '—'}`) : null;
  if (u.acked_at) {
    const who = ['phone', 'console', 'api'].includes(u.via) && u.acked_by ? `（${u.acked_by}）` : '';
    return [h('span', { class: 'ack-yes' }, h('span', { 'aria-hidden': 'true' }, '✔'), ` 已签收 ${clock(u.acked_at)}`),
      h('span', { class: 'ack-via' }, `${VIA[u.via] || u.via || ''}${who}`), esc];
  }
  if (!u.ack_required) return h('span', { class: 'muted' }, u.listed === false ? '— 发布渠道' : '— 无需签收');
  const btn = state.can('acks:write') && ev.state !== 'cancelled'
    ? h('button', { type: 'button', class: 'btn btn-small', 'data-ack-unit': u.unit_id, disabled: ds.length ? null : true,
      title: ds.length ? '单位来电确认收到时，代为登记签收' : '该单位没有可关联的通知', onclick: () => ackOnBehalf(u, ds) }, '☎ 代签收')
    : null;
  return [h('span', { class: 'ack-no' }, h('span', { 'aria-hidden': 'true' }, '✗'), ' 未签收'),
    u.ack_deadline ? h('span', { class: 'ack-via' }, `时限 ${when(u.ack_deadline)}`) : null, esc, btn];
}

async function ackOnBehalf(u, ds) {
  const note = h('input', { id: 'ack-note', name: 'note', maxlength: '200', required: true, placeholder: '例：值班员王某 14:05 来电确认' });
  const ok = await modal(`代 ${u.unit_name} 签收`, [
    h('p', {}, '该单位已来电确认收到通知。签收将记为「电话代签」，并记录您的身份。'),
    h('label', { for: 'ack-note' }, '来电人及说明'), note], [['ack', '确认代签收', 'btn-primary']]);
  if (!ok) return;
  const d = ds.find((x) => ['delivered', 'sent'].includes(x.status)) || ds[0];
  try {
    await api('POST', `/v1/deliveries/${encodeURIComponent(d.id)}/ack`, { via: 'phone', note: note.value });
    toast(`已登记 ${u.unit_name} 电话签收`, 'ok');
  } catch (err) {
    toast(alertBox(err).textContent, 'error');
  }
}
