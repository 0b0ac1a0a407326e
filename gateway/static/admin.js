// Operations (live from the stream), the roster with its validation warnings, the audit trail.
import { AUDIT, CHANNELS, LEVELS, alertBox, api, clear, duration, h, when } from './util.js';

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
  const filter = h('input', { id: 'roster-filter', type: 'search', placeholder: '按单位、角色或号码筛选' });
  const body = h('tbody');
  const fill = () => {
    const q = filter.value.trim();
    clear(body, roster.units.filter((u) => !q || JSON.stringify(u).includes(q) ||
      u.roles.some((r) => (meta.roles[r] || '').includes(q))).map((u) => h('tr', { 'data-unit': u.id },
      h('td', { 'data-label': '单位' }, h('strong', {}, u.name), u.aliases.length ? h('small', { class: 'muted' }, ` 又称 ${u.aliases.join('、')}`) : null),
      h('td', { 'data-label': '角色' }, u.roles.map((r) => meta.roles[r] || r).join('、')),
      h('td', { 'data-label': '工作组' }, u.groups.map((g) => meta.groups[g] || g).join('、') || '—'),
      h('td', { 'data-label': '联系方式' }, h('ul', { class: 'contacts' }, u.contacts.map((c) =>
        h('li', {}, h('span', { class: 'tag' }, { mobile: '手机', fixed: '座机', url: '接口' }[c.kind] || c.kind), ` ${c.raw || c.address}`)))))));
  };
  filter.addEventListener('input', fill);
  fill();
  clear(root, h('div', { class: 'roster' },
    h('h2', {}, `通讯录（${roster.units.length} 个单位）`, h('small', { class: 'muted' }, ` 版本 ${roster.version.slice(0, 12)}`)),
    roster.warnings.length ? h('div', { class: 'alert alert-warn', id: 'roster-warnings', role: 'note' },
      h('strong', {}, `⚠ 通讯录校验提示（${roster.warnings.length}）`), h('ul', {}, roster.warnings.map((w) => h('li', {}, w))))
      : h('p', { class: 'ok' }, '✓ 通讯录校验无提示。'),
    h('label', { for: 'roster-filter', class: 'sr-only' }, '筛选'), filter,
    h('table', { class: 'simple responsive', id: 'roster-table' },
      h('thead', {}, h('tr', {}, ['单位', '角色', '工作组', '联系方式'].map((t) => h('th', {}, t)))), body)));
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
