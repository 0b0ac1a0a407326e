// Shared helpers: DOM building (text nodes only, no HTML parsing: every string from the server is
// treated as text), Chinese labels, time formatting, and the API client.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const LEVELS = {
  red: { name: '红色预警', grade: 'Ⅰ级', icon: '■', rank: 0 },
  orange: { name: '橙色预警', grade: 'Ⅱ级', icon: '◆', rank: 1 },
  yellow: { name: '黄色预警', grade: 'Ⅲ级', icon: '▲', rank: 2 },
  blue: { name: '蓝色预警', grade: 'Ⅳ级', icon: '●', rank: 3 },
};

export const TYPES = {
  'warning.issued': '发布', 'warning.upgraded': '升级', 'warning.downgraded': '降级',
  'warning.extended': '延长', 'warning.lifted': '解除', 'advisory.issued': '不利气象条件提示',
  'advisory.cancelled': '提示解除', 'report.requested': '报送要求', notice: '通知',
};
export const CHAIN_TYPES = ['warning.upgraded', 'warning.downgraded', 'warning.extended', 'warning.lifted',
  'advisory.cancelled'];
export const STATUS = { actual: '正式', exercise: '演练', test: '测试' };
export const STATE = { active: '生效中', superseded: '已被替代', ended: '已结束', cancelled: '已取消',
  pending_signoff: '待签发', rejected: '已驳回', expired: '已过期' };
export const CHANNELS = { sms: '短信', voice: '语音电话', webhook: '网络推送' };
export const DELIVERY = {
  held: { icon: '⏸', text: '待签发' }, pending: { icon: '○', text: '待发送' }, leased: { icon: '⇢', text: '发送中' },
  sent: { icon: '↗', text: '已发出' }, delivered: { icon: '✓', text: '已送达' },
  failed: { icon: '✗', text: '失败' }, cancelled: { icon: '⊘', text: '已取消' },
  expired: { icon: '◷', text: '已过期' },
};
export const VIA = { voice: '语音按键', sms: '短信回复', link: '签收链接', phone: '电话代签', console: '控制台', api: '接口', report: '填报' };
export const ESCALATION = { repeat_voice: '重拨语音电话', notify_hq_office: '通报县指挥部办公室' };
export const AUDIT = {
  event_accepted: '接收事件', event_cancelled: '取消事件', ack: '签收', escalation_step: '升级催办',
  public_message_requested: '申请公众信息', public_message_approved: '批准公众信息',
  public_message_rejected: '驳回公众信息', public_message_expired: '公众信息草稿过期', config_reloaded: '重新加载配置',
  report_filed: '信息报送',
  roster_changed: '更新通讯录',
  event_signed: '签发预警', event_rejected: '驳回预警', signoff_expired: '预警草稿过期', signoff_notified: '通知签发人',
  release_reported: '向上级报告', status_reported: '签收情况报告',
};
export const PM_STATE = {
  pending_approval: '待审批', approved: '已批准并发布', rejected: '已驳回', expired: '已过期',
};

export function levelBadge(level, extra) {
  const lv = LEVELS[level];
  if (!lv) return h('span', { class: 'level level-none' }, '— 无级别');
  return h('span', { class: `level level-${level}` },
    h('span', { class: 'level-icon', 'aria-hidden': 'true' }, lv.icon), `${lv.name} ${lv.grade}`, extra || null);
}

const TZ = 'Asia/Shanghai';  // the county's time, whatever the viewing device is set to
const fmtShort = new Intl.DateTimeFormat('zh-CN', { timeZone: TZ, month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', hour12: false });
const fmtTime = new Intl.DateTimeFormat('zh-CN', { timeZone: TZ, hour: '2-digit', minute: '2-digit',
  second: '2-digit', hour12: false });

export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : fmtShort.format(d);
}

export function clock(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : fmtTime.format(d);
}

export function duration(seconds) {
  const s = Math.round(seconds || 0);
  if (s < 60) return `${s} 秒`;
  if (s < 3600) return `${Math.floor(s / 60)} 分 ${s % 60} 秒`;
  return `${Math.floor(s / 3600)} 小时 ${Math.floor((s % 3600) / 60)} 分`;
}

// ---- the API client: bearer token from sessionStorage on every call

const KEY = 'gw.token';
export const auth = {
  get token() { return sessionStorage.getItem(KEY) || ''; },
  set token(v) { if (v) sessionStorage.setItem(KEY, v); else sessionStorage.removeItem(KEY); },
  onUnauthorized: () => {},
};

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

const EXPLAIN = {
  two_person_rule: '双人规则：提交草稿的人不能审批自己的草稿，须由另一位县指挥部领导审批。',
  approver_level: '该级别预警的公众信息须由指定的领导审批（红色预警由指挥长审批）。',
  forbidden: '您的令牌没有执行此操作的权限。',
  already_decided: '该草稿已被处理（批准、驳回或过期）。',
  message_too_long: '短信超出条数上限，请缩短标题或正文。',
  unknown_audience: '发送对象中有未知的角色、工作组或单位。',
  idempotency_conflict: '同一编号的事件已用不同内容提交过。',
  unauthorized: '令牌无效或已失效，请重新登录。',
  event_not_active: '该事件已取消或已被替代。',
  drill_not_public: '演练和测试事件不能发布公众信息。',
  reason_required: '驳回须填写理由。',
  not_found: '找不到该记录。',
};

export function explain(err) {
  const cn = EXPLAIN[err.code] || '操作未成功。';
  return `${cn}（服务器答复 ${err.status}：${err.message}）`;
}

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${auth.token}` };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `网络错误：${e.message}`);
  }
  const data = await r.json().catch(() => null);
  if (!r.ok) {
    const e = (data && data.error) || {};
    if (r.status === 401) auth.onUnauthorized();
    throw new ApiError(r.status, e.code || 'error', e.message || r.statusText, e.field);
  }
  return data;
}

// ---- small UI pieces

export function toast(text, kind) {
  const box = document.getElementById('toasts');
  const el = h('div', { class: `toast ${kind || ''}`, title: '点击关闭', onclick: () => el.remove() }, text);
  box.append(el);
  setTimeout(() => el.remove(), 4000);
}

export function alertBox(err) {
  return h('div', { class: 'alert alert-error', role: 'alert' },
    h('strong', {}, '✗ '), err instanceof ApiError ? explain(err) : String(err));
}

// A modal built from `content`; resolves with the submit button's value, or null when dismissed.
export function modal(title, content, actions) {
  const dlg = document.getElementById('dialog');
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog', class: 'dialog-form' },
      h('h2', { id: 'dialog-title' }, title), content,
      h('div', { class: 'actions' }, actions.map(([value, label, cls]) =>
        h('button', { type: 'submit', value, class: `btn ${cls || ''}` }, label)),
      h('button', { type: 'submit', value: '', class: 'btn btn-ghost', formnovalidate: true }, '取消')));
    clear(dlg, form);
    const done = () => { dlg.removeEventListener('close', done); resolve(dlg.returnValue || null); };
    dlg.returnValue = '';
    dlg.addEventListener('close', done);
    dlg.showModal();
  });
}
