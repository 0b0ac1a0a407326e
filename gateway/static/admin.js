// Operations (live from the stream), the roster with its validation warnings, persons and today's duty
// (upload and download of the office's sheet with roster:write), the audit trail.
import { AUDIT, CHANNELS, LEVELS, alertBox, api, auth, clear, duration, h, modal, toast, when } from './util.js';

const REASONS = {
  rate_limited: '限流（429）', server_error: '服务端错误（5xx）', timeout: '超时', connection: '无法接通',
  invalid_recipient: '号码无效', auth: '认证失败', client_error: '请求错误（4xx）', other: '其他',
};

export function renderOps(root, state) {
  const ops = state.ops;
  if (!ops) { clear(root, h('p', { class: 'muted' }, '正在加载运行状态…')); return; }
  clear(root, h('div', { class: 'ops' },
    h('div', { class: 'ops-head' }, h('h2', {}, '运行状态'),
      h('p', {}, '实时数据每 2 秒刷新。完整指标供 Prometheus 采集：',
        h('a', { href: '/metrics', target: '_blank', rel: 'noopener noreferrer', id: 'metrics-link' }, '/metrics'), ' · ',
        h('a', { href: '/readyz', target: '_blank', rel: 'noopener noreferrer' }, '/readyz'))),
    h('ul', { class: 'channel-cards', id: 'channels' }, ops.channels.map((c) => h('li', {
      class: `channel-card ${c.up ? 'up' : 'down'}`, 'data-channel': c.name },
    h('h3', {}, CHANNELS[c.name] || c.name, h('small', {}, ` ${c.name}`)),
    h('p', { class: 'updown' }, c.up ? '● 正常' : '✗ 中断（熔断或凭据被拒）'),
    h('dl', { class: 'kv' },
      h('dt', {}, '队列中'), h('dd', { 'data-depth': String(c.depth) }, `${c.depth} 条`),
      h('dt', {}, '最久等待'), h('dd', {}, c.oldest_pending ? duration(c.oldest_pending) : '—'))))),
    h('h3', {}, '发送尝试失败次数（自启动，按原因）'),
    ops.failure_counts.length ? h('table', { class: 'simple' },
      h('thead', {}, h('tr', {}, h('th', {}, '渠道'), h('th', {}, '原因'), h('th', {}, '次数'))),
      h('tbody', {}, ops.failure_counts.map((f) => h('tr', {}, h('td', {}, CHANNELS[f.channel] || f.channel),
        h('td', {}, REASONS[f.reason] || f.reason), h('td', { class: 'num' }, String(f.count))))))
      : h('p', { class: 'muted' }, '没有失败的发送尝试（运营商回执报告的失败见下表）。'),
    h('h3', {}, '最近失败的通知'),
    ops.recent_failures.length ? h('table', { class: 'simple responsive', id: 'recent-failures' },
      h('thead', {}, h('tr', {}, ['单位', '渠道', '地址', '原因', '说明', '预警'].map((t) => h('th', {}, t)))),
      h('tbody', {}, ops.recent_failures.map((f) => h('tr', {},
        h('td', { 'data-label': '单位' }, f.unit_name), h('td', { 'data-label': '渠道' }, CHANNELS[f.channel] || f.channel),
        h('td', { 'data-label': '地址' }, f.address), h('td', { 'data-label': '原因' }, REASONS[f.reason] || f.reason || '—'),
        h('td', { 'data-label': '说明' }, f.last_error || '—'),
        h('td', { 'data-label': '预警' }, `${LEVELS[f.level]?.name || ''} ${f.event_id}`)))))
      : h('p', { class: 'muted' }, '最近的预警没有失败的通知。')));
}

let roster = null;

// Beijing wall-clock time "YYYY-MM-DD HH:MM", the way duty entries are written
function beijingNow() {
  const t = new Date(Date.now() + 8 * 3600 * 1000).toISOString();
  return `${t.slice(0, 10)} ${t.slice(11, 16)}`;
}

// who the unit's schedule has on duty now ("today's duty"), null when nobody is scheduled
export function onDuty(unit, now = beijingNow()) {
  const entry = (unit.duty || []).find((d) => (d.date ? now.slice(0, 10) === d.date : d.from <= now && now < d.to));
  return entry ? (unit.persons || []).find((p) => p.id === entry.person) || null : null;
}

const SHEET = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';

async function download(format) {
  const r = await fetch(`/v1/roster/export?format=${format}`, { headers: { Authorization: `Bearer ${auth.token}` } });
  if (!r.ok) { toast(`下载失败（${r.status}）`, 'error'); return; }
  const a = h('a', { href: URL.createObjectURL(await r.blob()), download: `通讯录.${format}` });
  document.body.append(a);
  a.click();
  a.remove();
}

async function upload(file, root, state) {
  const format = file.name.toLowerCase().endsWith('.csv') ? 'csv' : /\.ya?ml$/i.test(file.name) ? 'yaml' : 'xlsx';
  const types = { xlsx: SHEET, csv: 'text/csv', yaml: 'application/yaml' };
  const r = await fetch(`/v1/roster?format=${format}`, {
    method: 'PUT', body: file, headers: { Authorization: `Bearer ${auth.token}`, 'Content-Type': types[format] } });
  const data = await r.json().catch(() => null);
  if (!r.ok) {
    const problems = (data && data.error && data.error.problems) || [];
    modal('通讯录未导入（未做任何更改）', h('div', {}, h('p', {}, (data && data.error && data.error.message) || r.statusText),
      h('ul', { id: 'roster-problems' }, problems.map((p) =>
        h('li', {}, `${p.sheet}${p.row ? ` 第${p.row}行` : ''}${p.column ? ` ${p.column}列` : ''}：${p.message}`)))), []);
    return;
  }
  toast(data.changed ? `已导入：第 ${data.revision} 版` : '内容无变化', 'ok');
  roster = null;
  await renderRoster(root, state);
}

export async function renderRoster(root, state) {
  if (!roster) {
    clear(root, h('p', { class: 'muted' }, '正在加载通讯录…'));
    try {
      roster = await api('GET', '/v1/roster');
    } catch (err) {
      clear(root, alertBox(err));
      return;
    }
  }
  const meta = state.meta || { roles: {}, groups: {} };
  const filter = h('input', { id: 'roster-filter', type: 'search', placeholder: '按单位、角色、人员或号码筛选' });
  const body = h('tbody');
  const fill = () => {
    const q = filter.value.trim();
    clear(body, roster.units.filter((u) => !q || JSON.stringify(u).includes(q) ||
      u.roles.some((r) => (meta.roles[r] || '').includes(q))).map((u) => {
      const duty = onDuty(u);
      return h('tr', { 'data-unit': u.id },
        h('td', { 'data-label': '单位' }, h('strong', {}, u.name), u.aliases.length ? h('small', { class: 'muted' }, ` 又称 ${u.aliases.join('、')}`) : null),
        h('td', { 'data-label': '角色' }, u.roles.map((r) => meta.roles[r] || r).join('、')),
        h('td', { 'data-label': '工作组' }, u.groups.map((g) => meta.groups[g] || g).join('、') || '—'),
        h('td', { 'data-label': '联系方式' }, h('ul', { class: 'contacts' }, u.contacts.map((c) =>
          h('li', {}, h('span', { class: 'tag' }, { mobile: '手机', fixed: '座机', url: '接口' }[c.kind] || c.kind), ` ${c.raw || c.address}`)))),
        h('td', { 'data-label': '人员' }, (u.persons || []).length ? h('ul', { class: 'contacts persons' }, u.persons.map((p) =>
          h('li', { 'data-person': p.id }, h('span', { class: 'tag' }, p.role_label), ` ${p.name} ${p.mobile || p.landline || ''}`))) : '—'),
        h('td', { 'data-label': '今日值班', class: 'on-duty' }, duty ? `${duty.name} ${duty.mobile || duty.landline || ''}` : '—'));
    }));
  };
  filter.addEventListener('input', fill);
  fill();
  const office = state.can('roster:write') ? h('div', { class: 'roster-office', id: 'roster-office' },
    h('label', { class: 'btn upload' }, '上传通讯录（XLSX / CSV / YAML）',
      h('input', { type: 'file', id: 'roster-upload', accept: '.xlsx,.csv,.yaml,.yml', hidden: true,
        onchange: (e) => { if (e.target.files[0]) upload(e.target.files[0], root, state); } })),
    ' ', h('button', { type: 'button', class: 'btn', id: 'roster-download', onclick: () => download('xlsx') }, '下载通讯录（XLSX）'),
    h('p', { class: 'muted' }, '表“人员”：单位、编号、姓名、角色、手机、座机、备注；表“值班表”：单位、值班人、日期或开始/结束（北京时间）。整表校验，有误则不做任何更改。'))
    : null;
  const persons = roster.units.reduce((n, u) => n + (u.persons || []).length, 0);
  clear(root, h('div', { class: 'roster' },
    h('h2', {}, `通讯录（${roster.units.length} 个单位，${persons} 名人员）`, h('small', { class: 'muted' }, ` 版本 ${roster.version.slice(0, 12)}`)),
    office,
    roster.warnings.length ? h('div', { class: 'alert alert-warn', id: 'roster-warnings', role: 'note' },
      h('strong', {}, `⚠ 通讯录校验提示（${roster.warnings.length}）`), h('ul', {}, roster.warnings.map((w) => h('li', {}, w))))
      : h('p', { class: 'ok' }, '✓ 通讯录校验无提示。'),
    h('label', { for: 'roster-filter', class: 'sr-only' }, '筛选'), filter,
    h('table', { class: 'simple responsive', id: 'roster-table' },
      h('thead', {}, h('tr', {}, ['单位', '角色', '工作组', '联系方式', '人员', '今日值班'].map((t) => h('th', {}, t)))), body)));
}

export async function renderAudit(root) {
  clear(root, h('p', { class: 'muted' }, '正在加载审计记录…'));
  const records = [];
  let after = 0;
  try {
    // the trail is read oldest first in pages; a console shows the latest 5000 at most
    for (let page = 0; page < 5; page += 1) {
      const r = await api('GET', `/v1/audit?after=${after}&limit=1000`);
      records.push(...r.records);
      if (r.next_after === null || r.records.length < 1000) break;
      after = r.next_after;
    }
  } catch (err) {
    clear(root, alertBox(err));
    return;
  }
  records.reverse();
  clear(root, h('div', { class: 'audit' },
    h('h2', {}, `审计记录（${records.length} 条，最新在前）`),
    h('p', { class: 'muted' }, '只增不改，逐条以哈希相连；可用 gateway audit verify 校验完整性。'),
    h('table', { class: 'simple responsive', id: 'audit-table' },
      h('thead', {}, h('tr', {}, ['序号', '时间', '操作人', '动作', '对象', '详情'].map((t) => h('th', {}, t)))),
      h('tbody', {}, records.map((r) => h('tr', { 'data-action': r.action },
        h('td', { 'data-label': '序号', class: 'num' }, String(r.seq)), h('td', { 'data-label': '时间' }, when(r.at)),
        h('td', { 'data-label': '操作人' }, r.principal), h('td', { 'data-label': '动作' }, AUDIT[r.action] || r.action),
        h('td', { 'data-label': '对象' }, h('code', {}, r.subject)),
        h('td', { 'data-label': '详情' }, h('code', { class: 'detail-json' }, JSON.stringify(r.detail)))))))));
}
