// Public messages under the two-person rule: the media centre drafts (public:request), an HQ
// leader who is not the drafter approves or rejects (public:approve). The server enforces the
// rule; this page explains it and shows the server's answer when it refuses.
import { DELIVERY, LEVELS, PM_STATE, TYPES, alertBox, api, clear, h, toast, when } from './util.js';

const KEY = 'gw.drafts';
const known = () => JSON.parse(sessionStorage.getItem(KEY) || '[]');
function remember(id) {
  const ids = [id, ...known().filter((x) => x !== id)].slice(0, 20);
  sessionStorage.setItem(KEY, JSON.stringify(ids));
}

let root = null;
let current = null;   // the draft on screen
let problem = null;   // the server's last refusal, shown until the next action
let appRef = null;
let poll = null;

export function renderPublic(el, state, app) {
  root = el;
  appRef = app;
  const fromHash = location.hash.match(/^#public\/(pm_[A-Za-z0-9]+)$/);
  if (fromHash && (!current || current.id !== fromHash[1])) { load(fromHash[1], state); return; }
  draw(state);
}

function draw(state) {
  clearTimeout(poll);
  // follow an approved message until every public channel has answered
  const busy = current && current.state === 'approved' &&
    (!current.deliveries.length || current.deliveries.some((d) => !['delivered', 'failed', 'cancelled', 'expired'].includes(d.status)));
  if (busy) poll = setTimeout(() => { if (state.view === 'public' && current) load(current.id, state); }, 1500);
  clear(root, h('div', { class: 'public' },
    rule(),
    state.can('public:request') ? requestForm(state) : null,
    lookup(state),
    current ? draftCard(current, state) : null,
    recent(state)));
}

function rule() {
  return h('div', { class: 'rule', id: 'two-person-rule' },
    h('h2', {}, '双人规则'),
    h('p', {}, '公众信息（运营商广播、融媒体发布）须经两人把关：融媒体中心提交草稿，',
      h('strong', {}, '另一位'), '县指挥部领导审批后才会发出。提交草稿的人不能审批自己的草稿；红色预警的公众信息须由指挥长审批。',
      '此规则由服务器强制执行，页面上的按钮只是方便操作。'));
}

function requestForm(state) {
  const active = ((state.chains && state.chains.active) || []).filter((e) => e.status === 'actual');
  const pick = state.pmEvent || (active[0] && active[0].id) || '';
  const select = h('select', { id: 'pm-event', required: true },
    active.map((e) => h('option', { value: e.id, selected: e.id === pick },
      `${LEVELS[e.level]?.name || ''}${TYPES[e.type] || e.type} · ${when(e.accepted_at)} · ${e.id}`)));
  const text = h('textarea', { id: 'pm-text', rows: '4', maxlength: '500', required: true,
    placeholder: '例：泽州县于今日12时启动重污染天气橙色预警，请减少户外活动，中小学停止户外课程。' });
  const count = h('small', { class: 'hint' }, '0 / 500 字');
  text.addEventListener('input', () => { count.textContent = `${text.value.length} / 500 字`; });
  const form = h('form', { class: 'card', id: 'pm-request' },
    h('h2', {}, '申请发布公众信息'),
    active.length ? null : h('p', { class: 'muted' }, '当前没有生效中的正式预警。'),
    h('div', { class: 'field' }, h('label', { for: 'pm-event' }, '对应预警'), select),
    h('div', { class: 'field' }, h('label', { for: 'pm-text' }, '公众信息正文'), text, count),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn btn-primary', disabled: active.length ? null : true }, '提交审批')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const pm = await api('POST', '/v1/public-messages', { event_id: select.value, text: text.value.trim() });
      remember(pm.id);
      current = pm;
      problem = null;
      state.pmEvent = null;
      history.replaceState(null, '', `#public/${pm.id}`);
      toast(`草稿 ${pm.id} 已提交，待另一位领导审批`, 'ok');
    } catch (err) {
      problem = err;
    }
    draw(state);
  });
  return form;
}

function lookup(state) {
  const input = h('input', { id: 'pm-id', placeholder: 'pm_…', pattern: 'pm_[A-Za-z0-9]+', required: true, spellcheck: 'false' });
  const form = h('form', { class: 'card lookup', id: 'pm-lookup' },
    h('h2', {}, state.can('public:approve') ? '审批公众信息' : '查看公众信息'),
    h('p', { class: 'muted' }, '输入草稿编号（由提交人告知，或打开其分享的链接）。'),
    h('div', { class: 'inline-form' }, h('label', { for: 'pm-id', class: 'sr-only' }, '草稿编号'), input,
      h('button', { type: 'submit', class: 'btn' }, '查看')));
  form.addEventListener('submit', (e) => { e.preventDefault(); load(input.value.trim(), state); });
  return form;
}

async function load(id, state) {
  try {
    current = await api('GET', `/v1/public-messages/${encodeURIComponent(id)}`);
    remember(current.id);
    problem = null;
    history.replaceState(null, '', `#public/${current.id}`);
  } catch (err) {
    current = null;
    problem = err;
  }
  draw(state);
}

function draftCard(pm, state) {
  const mine = state.me && pm.requester === state.me.principal;
  const pending = pm.state === 'pending_approval';
  const reason = h('input', { id: 'pm-reason', maxlength: '500', placeholder: '驳回理由（驳回时必填）' });
  const decide = async (verb) => {
    if (verb === 'reject' && !reason.value.trim()) { reason.focus(); reason.setCustomValidity('请填写驳回理由'); reason.reportValidity(); return; }
    try {
      current = await api('POST', `/v1/public-messages/${encodeURIComponent(pm.id)}/${verb}`,
        verb === 'reject' ? { reason: reason.value.trim() } : {});
      problem = null;
      toast(verb === 'approve' ? '已批准，公众信息正在发出' : '已驳回', 'ok');
    } catch (err) {
      problem = err;
    }
    draw(state);
  };
  const link = `${location.origin}${location.pathname}#public/${pm.id}`;
  return h('article', { class: `card draft state-${pm.state}`, id: 'pm-card', 'data-state': pm.state, 'data-pm': pm.id },
    h('h3', {}, `草稿 ${pm.id}`, h('span', { class: 'tag', id: 'pm-state' }, PM_STATE[pm.state] || pm.state)),
    problem ? alertBox(problem) : null,
    h('blockquote', { class: 'pm-text' }, pm.text),
    h('dl', { class: 'kv' },
      h('dt', {}, '对应事件'), h('dd', {}, h('a', { href: '#', onclick: (e) => { e.preventDefault(); appRef.select(pm.event_id); } }, pm.event_id)),
      h('dt', {}, '提交人'), h('dd', {}, pm.requester, mine ? '（您本人）' : ''),
      h('dt', {}, '审批人'), h('dd', {}, pm.approver || '—'),
      h('dt', {}, '提交时间'), h('dd', {}, when(pm.created_at)),
      h('dt', {}, '草稿有效至'), h('dd', {}, when(pm.expires_at)),
      pm.reason ? [h('dt', {}, '驳回理由'), h('dd', {}, pm.reason)] : null,
      h('dt', {}, '发布渠道'), h('dd', {}, (pm.units || []).join('、'))),
    pending ? h('p', { class: 'muted share' }, '分享给审批人：', h('code', { id: 'pm-link' }, link)) : null,
    pending && state.can('public:approve') ? h('div', { class: 'decide' },
      mine ? h('p', { class: 'alert alert-warn', id: 'self-approval-note' }, '⚠ 这是您本人提交的草稿。按双人规则须由另一位领导审批，服务器会拒绝您的批准。') : null,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'btn btn-primary', id: 'pm-approve', onclick: () => decide('approve') }, '✓ 批准并发布'),
        reason,
        h('button', { type: 'button', class: 'btn btn-danger', id: 'pm-reject', onclick: () => decide('reject') }, '✗ 驳回'))) : null,
    pm.deliveries && pm.deliveries.length ? h('div', {}, h('h4', {}, '发布情况'), h('ul', { id: 'pm-deliveries' },
      pm.deliveries.map((d) => h('li', { 'data-status': d.status },
        `${d.unit_name}：${DELIVERY[d.status]?.icon || ''} ${DELIVERY[d.status]?.text || d.status}`)))) : null);
}

function recent(state) {
  const ids = known();
  if (!ids.length) return problem && !current ? alertBox(problem) : null;
  return h('div', { class: 'card' }, problem && !current ? alertBox(problem) : null, h('h3', {}, '本次会话中的草稿'),
    h('ul', {}, ids.map((id) => h('li', {}, h('a', { href: `#public/${id}`, onclick: (e) => { e.preventDefault(); load(id, state); } }, id)))));
}
