// Issue an event from a form, with a live preview of the SMS (text and segment count) and the
// voice text, rendered by the server exactly as it would send them (POST /v1/preview).
import { CHAIN_TYPES, LEVELS, STATUS, TYPES, alertBox, api, clear, h, levelBadge, modal, toast, when } from './util.js';

let form = null;
let previewBox = null;
let timer = null;
let clientId = newId();
let lastPreview = null;
let unitGroups = null;  // unit id -> the role group its messages are listed under

// the role a unit's messages are listed under, the first that applies in this order
const ROLE_GROUPS = [['upward', '上级报告（市级）'], ['hq', '县指挥部领导（值班室）'], ['duty_office', '值班室'],
  ['hq_office', '县指挥部办公室'], ['carrier', '通信运营商'], ['media', '融媒体'], ['township', '乡镇人民政府'],
  ['member_unit', '县指挥部成员单位']];
const CHANNELS = { sms: '短信', voice: '语音', webhook: '网络推送' };

async function groupsOf() {
  if (unitGroups) return unitGroups;
  try {
    const r = await api('GET', '/v1/roster');
    unitGroups = Object.fromEntries(r.units.map((u) => {
      const hit = ROLE_GROUPS.find(([role]) => (u.roles || []).includes(role));
      return [u.id, hit ? hit[1] : '其他'];
    }));
  } catch {
    unitGroups = {};  // a token without events:read: one list
  }
  return unitGroups;
}

function messagesBox(messages) {
  // every unit's own message, exactly as it will be sent, grouped by role
  const box = h('details', { class: 'messages', id: 'preview-messages' },
    h('summary', {}, `每个单位收到的内容（${messages.length} 条）`));
  groupsOf().then((groups) => {
    const byGroup = new Map();
    for (const m of messages) {
      const g = groups[m.unit_id] || '其他';
      if (!byGroup.has(g)) byGroup.set(g, []);
      byGroup.get(g).push(m);
    }
    const order = [...ROLE_GROUPS.map(([, label]) => label), '其他'];
    for (const label of order.filter((l) => byGroup.has(l))) {
      box.append(h('h4', {}, `${label}（${byGroup.get(label).length}）`), h('ul', { class: 'message-list' },
        byGroup.get(label).map((m) => h('li', { 'data-unit': m.unit_id },
          h('strong', {}, m.unit_name), ` · ${CHANNELS[m.channel] || m.channel}`,
          m.segments ? h('span', { class: 'muted' }, ` · ${m.segments} 条`) : null,
          h('div', { class: m.channel === 'voice' ? 'voice-text' : 'sms-bubble' }, m.text)))));
    }
  });
  return box;
}

function newId() {
  // a client key: a double click or a retried request is answered 200 with the same event
  const rnd = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, '0')).join('');
  return `con-${Date.now().toString(36)}-${rnd}`;
}

function beijingNow() {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric',
    month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false })
    .formatToParts(new Date()).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour === '24' ? '00' : parts.hour}:${parts.minute}`;
}

const rfc = (local) => (local ? `${local}:00+08:00` : undefined);  // the form is in Beijing time

export function renderIssue(root, state, app) {
  if (!form) build(root, state, app);
  refreshSupersedes(state);
  sync();
}

function field(label, control, hint) {
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hint ? h('small', { class: 'hint' }, hint) : null);
}

function build(root, state, app) {
  const type = h('select', { id: 'f-type', name: 'type' },
    Object.entries(TYPES).map(([v, t]) => h('option', { value: v }, `${t}（${v}）`)));
  const levels = h('fieldset', { class: 'levels', id: 'f-levels' }, h('legend', {}, '预警级别'),
    ['yellow', 'orange', 'red', 'blue'].map((lv) => h('label', { class: 'level-choice' },
      h('input', { type: 'radio', name: 'level', value: lv, checked: lv === 'yellow' }), levelBadge(lv,
        lv === 'blue' ? h('small', {}, '（旧标准）') : null))));
  const status = h('fieldset', { class: 'inline' }, h('legend', {}, '性质'),
    Object.entries(STATUS).map(([v, t]) => h('label', {}, h('input', { type: 'radio', name: 'status', value: v, checked: v === 'actual' }), ` ${t}`)));
  const supersedes = h('select', { id: 'f-supersedes', name: 'supersedes' });
  form = h('form', { id: 'issue-form', class: 'issue-form', autocomplete: 'off' },
    h('h2', {}, '发布预警或通知'),
    field('类型', type),
    levels,
    status,
    h('div', { class: 'field', id: 'f-supersedes-field' }, h('label', { for: 'f-supersedes' }, '接续的预警（升级、降级、延长、解除须指明）'), supersedes),
    h('div', { class: 'row2' },
      field('起始时间（北京时间）', h('input', { id: 'f-from', name: 'valid_from', type: 'datetime-local', value: beijingNow() })),
      field('预计解除时间', h('input', { id: 'f-until', name: 'valid_until', type: 'datetime-local' }), '留空：解除时间另行通知')),
    field('标题（可选）', h('input', { id: 'f-headline', name: 'headline', maxlength: '200' })),
    field('正文补充（可选，计入短信长度）', h('textarea', { id: 'f-body', name: 'body', rows: '3', maxlength: '2000' })),
    field('文号（可选）', h('input', { id: 'f-docno', name: 'doc_no', maxlength: '100', placeholder: '例：泽重污指发〔2026〕12号' })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn btn-primary', id: 'issue-submit' }, '发布…')));
  previewBox = h('div', { class: 'preview', id: 'preview', 'aria-live': 'polite' }, h('p', { class: 'muted' }, '填写后在此预览短信。'));
  form.addEventListener('input', () => { sync(); schedule(); });
  form.addEventListener('change', () => { sync(); schedule(); });
  form.addEventListener('submit', (e) => { e.preventDefault(); submit(app); });
  clear(root, h('div', { class: 'issue' }, form, h('aside', { class: 'preview-col' }, h('h2', {}, '短信预览'), previewBox)));
  schedule();
}

function refreshSupersedes(state) {
  const sel = form.querySelector('#f-supersedes');
  const keep = sel.value;
  const active = (state.chains && state.chains.active) || [];
  clear(sel, h('option', { value: '' }, '（无）'), active.map((e) => h('option', { value: e.id, selected: e.id === keep },
    `${LEVELS[e.level]?.name || ''}${TYPES[e.type] || e.type} · ${when(e.accepted_at)} · ${e.id}`)));
}

function sync() {
  const type = form.querySelector('#f-type').value;
  const needsLevel = type.startsWith('warning.') && type !== 'warning.lifted';
  form.querySelector('#f-levels').hidden = !needsLevel;
  form.querySelector('#f-supersedes-field').hidden = !CHAIN_TYPES.includes(type);
}

function body() {
  const v = (id) => form.querySelector(id).value.trim();
  const type = v('#f-type');
  const b = { id: clientId, type, status: form.querySelector('input[name=status]:checked').value };
  if (!form.querySelector('#f-levels').hidden) b.level = form.querySelector('input[name=level]:checked').value;
  if (!form.querySelector('#f-supersedes-field').hidden && v('#f-supersedes')) b.supersedes = v('#f-supersedes');
  if (v('#f-from')) b.valid_from = rfc(v('#f-from'));
  if (v('#f-until')) b.valid_until = rfc(v('#f-until'));
  if (v('#f-headline')) b.headline = v('#f-headline');
  if (v('#f-body')) b.body = v('#f-body');
  if (v('#f-docno')) b.issued_by = { doc_no: v('#f-docno') };
  return b;
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(preview, 250);
}

async function preview() {
  const sent = JSON.stringify(body());
  try {
    const p = await api('POST', '/v1/preview', JSON.parse(sent));
    if (JSON.stringify(body()) !== sent) return;  // the form changed meanwhile: a newer preview is coming
    lastPreview = p;
    showPreview(p);
  } catch (err) {
    lastPreview = null;
    clear(previewBox, alertBox(err));
  }
}

function showPreview(p) {
  const s = p.sms;
  const ch = p.by_channel || {};
  clear(previewBox,
    h('div', { class: 'sms-bubble', id: 'preview-sms' }, s.text),
    h('p', { class: `segments ${s.over_budget ? 'over' : ''}`, id: 'preview-segments' },
      h('strong', {}, `${s.segments} 条短信`), `（${s.chars} 字，上限 ${s.max_segments} 条）`,
      s.unit_name ? h('span', { class: 'muted' }, ` · 以「${s.unit_name}」为例（最长的一条）；正文过长时截断，全文见签收链接`) : null),
    p.problem ? h('div', { class: 'alert alert-error', role: 'alert' }, `✗ ${p.problem.message}`) : null,
    h('h3', {}, '语音播报'), h('p', { class: 'voice-text', id: 'preview-voice' }, p.voice.text),
    h('p', { class: 'plan', id: 'preview-plan' }, `将通知 ${p.units} 个单位（其中 ${p.acks_required} 个须签收），共 ${p.deliveries} 条：`,
      `短信 ${ch.sms || 0} · 语音 ${ch.voice || 0} · 网络推送 ${ch.webhook || 0}`),
    p.signoff && p.signoff.required ? h('p', { class: 'alert alert-warn', id: 'preview-signoff' },
      `须经县指挥部领导签发后才会发出（可签发：${p.signoff.signers.join('、') || '任一有签发权限的领导'}）。`) : null,
    p.warnings.length ? h('details', { class: 'warnings' }, h('summary', {}, `⚠ ${p.warnings.length} 条提示`),
      h('ul', {}, p.warnings.map((w) => h('li', {}, w)))) : null,
    p.messages && p.messages.length ? messagesBox(p.messages) : null);
}

async function submit(app) {
  await preview();
  if (!lastPreview) return;
  const b = body();
  const p = lastPreview;
  const ok = await modal('确认发布', h('div', {},
    h('p', {}, b.level ? levelBadge(b.level) : null, ` ${TYPES[b.type]}`, b.status !== 'actual' ? `【${STATUS[b.status]}】` : ''),
    h('p', {}, `将立即通知 ${p.units} 个单位，共 ${p.deliveries} 条通知；短信 ${p.sms.segments} 条/人。`),
    h('div', { class: 'sms-bubble' }, p.sms.text)), [['issue', '确认发布', 'btn-primary']]);
  if (!ok) return;
  try {
    const r = await api('POST', '/v1/events', b);
    toast(`已受理，事件编号 ${r.event_id}，共 ${r.deliveries} 条通知`, 'ok');
    clientId = newId();
    form.querySelector('#f-headline').value = '';
    form.querySelector('#f-body').value = '';
    app.select(r.event_id);
  } catch (err) {
    clear(previewBox, alertBox(err));
  }
}
