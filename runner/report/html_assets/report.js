// The runner's HTML report: reads the embedded JSON and renders it with createElement/textContent only (every
// string in the data comes from a model or a spec, so none is ever parsed as HTML).
(function () {
  'use strict';

  // two parts: the index (summary and table rows) comes before this script, so the table is up while the browser
  // is still reading the transcripts (after it); a chat or a reply search waits for them (DOMContentLoaded)
  var STARTED = performance.now();
  var DATA = JSON.parse(document.getElementById('runner-index').textContent);
  var PARSED = performance.now();
  var CONVS = null;
  var LOADED_AT = null;
  var pendingOpen = -1;
  var HAS_BASELINE = !!DATA.baseline;
  var VERDICT_RANK = { error: 0, failed: 1, skipped: 2, passed: 3 };
  var PAGE_SIZES = [50, 100, 200, 500, 1000];

  // ---- helpers -------------------------------------------------------------------------------------------
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      parent.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return parent;
  }
  function str(value) {
    if (typeof value === 'string') return value;
    if (value === null || value === undefined) return '';
    try { return JSON.stringify(value); } catch (e) { return String(value); }
  }
  function pretty(value) {
    if (typeof value === 'string') {
      try { return JSON.stringify(JSON.parse(value), null, 2); } catch (e) { return value; }
    }
    try { return JSON.stringify(value, null, 2); } catch (e) { return String(value); }
  }
  function arr(value) { return Array.isArray(value) ? value : []; }
  function num(n) { return (typeof n === 'number' && isFinite(n)) ? n : null; }
  function fmtInt(n) { return n === null ? '—' : Math.round(n).toLocaleString('en-US'); }
  function fmtMs(ms) {
    if (ms === null) return '—';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    var m = Math.floor(ms / 60000);
    return m + ' min ' + Math.round((ms - m * 60000) / 1000) + ' s';
  }
  function verdictOf(t) { return typeof t.verdict === 'string' ? t.verdict : 'unknown'; }
  function badge(verdict) { return el('span', 'badge ' + (VERDICT_RANK[verdict] === undefined ? 'unknown' : verdict), verdict); }
  // a link to a file saved next to the transcripts: relative, each segment encoded, so no scheme can sneak in
  function fileHref(dir, path) {
    var parts = (dir && dir !== '.' ? dir.split('/') : []).concat(String(path).split('/'));
    return './' + parts.map(function (p) { return p === '..' ? '..' : encodeURIComponent(p); }).join('/');
  }
  function safeImage(uri) { return typeof uri === 'string' && /^data:image\/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]*$/.test(uri); }

  // ---- the row model: one flat record per conversation, for filtering and sorting -------------------------
  var ROWS = arr(DATA.rows).map(function (r, i) {
    var passed = num(r.passed) || 0, failed = num(r.failed) || 0;
    return {
      i: i, verdict: verdictOf(r), name: str(r.name), spec: str(r.spec), caseLabel: str(r['case']),
      turns: num(r.turns) || 0, passed: passed, total: passed + failed + (num(r.not_judged) || 0),
      failedChecks: failed, latency: num(r.latency), tokens: num(r.tokens), tags: arr(r.tags).map(str),
      pipeline: str(r.pipeline), model: str(r.model), backend: str(r.backend), duration: num(r.duration_ms),
      started: num(r.started_at), change: r.change ? str(r.change) : null, text: null
    };
  });
  function searchText(row) {
    if (row.text === null) {
      var parts = [row.name, row.spec, row.caseLabel];
      if (CONVS) arr((CONVS[row.i].transcript || {}).turns).forEach(function (turn) { parts.push(str(turn.reply)); });
      else return (parts.join('\n')).toLowerCase();  // the replies are not read yet: names and paths for now
      row.text = parts.join('\n').toLowerCase();
    }
    return row.text;
  }

  // ---- state -----------------------------------------------------------------------------------------------
  var state = { verdicts: {}, tag: '', pipeline: '', text: '', changedOnly: false, sort: 'verdict', dir: 1,
                page: 0, pageSize: 200, selected: -1 };
  var view = ROWS.slice();

  var COLUMNS = [
    { key: 'index', label: '#', num: true, value: function (r) { return r.i; } },
    { key: 'verdict', label: 'Verdict', value: function (r) { var v = VERDICT_RANK[r.verdict]; return v === undefined ? 4 : v; } },
    { key: 'name', label: 'Conversation', value: function (r) { return r.name.toLowerCase(); } },
    { key: 'turns', label: 'Turns', num: true, value: function (r) { return r.turns; } },
    { key: 'checks', label: 'Checks', num: true, value: function (r) { return r.total ? r.passed / r.total : -1; } },
    { key: 'latency', label: 'Latency', num: true, value: function (r) { return r.latency; } },
    { key: 'tokens', label: 'Tokens', num: true, value: function (r) { return r.tokens; } }
  ];
  var CHANGE_RANK = { changed: 0, added: 1, unchanged: 2 };
  if (HAS_BASELINE) {
    COLUMNS.push({ key: 'change', label: 'Δ baseline', value: function (r) { var v = CHANGE_RANK[r.change]; return v === undefined ? 3 : v; } });
  }

  // ---- summary -----------------------------------------------------------------------------------------------
  function renderSummary() {
    var title = DATA.title || 'runner report';
    document.getElementById('title').textContent = title;
    var box = document.getElementById('summary');
    var counts = {}, checksPassed = 0, checksTotal = 0, sumMs = 0, started = null, models = {}, backends = {},
        specs = {}, pipelines = {};
    ROWS.forEach(function (row) {
      counts[row.verdict] = (counts[row.verdict] || 0) + 1;
      checksPassed += row.passed; checksTotal += row.total;
      sumMs += row.duration || 0;
      if (row.started && row.started > 0 && (started === null || row.started < started)) started = row.started;
      if (row.model) models[row.model] = 1;
      if (row.backend) backends[row.backend] = 1;
      if (row.spec) specs[row.spec] = 1;
      if (row.pipeline) pipelines[row.pipeline] = 1;
    });
    var total = ROWS.length;
    function stat(cls, value, label) {
      var s = el('div', 'stat ' + cls);
      s.setAttribute('data-stat', cls);
      return add(s, el('span', 'v', value), el('span', 'k', label));
    }
    add(box, stat('total', fmtInt(total), 'conversations'));
    ['passed', 'failed', 'error', 'skipped'].forEach(function (v) {
      if (v === 'passed' || v === 'failed' || counts[v]) add(box, stat(v, fmtInt(counts[v] || 0), v));
    });
    Object.keys(counts).forEach(function (v) { if (VERDICT_RANK[v] === undefined) add(box, stat(v, fmtInt(counts[v]), v)); });
    var judged = total - (counts.skipped || 0);
    add(box, stat('rate', judged ? ((100 * (counts.passed || 0) / judged).toFixed(1) + '%') : '—', 'pass rate'));
    add(box, stat('checks', fmtInt(checksPassed) + ' / ' + fmtInt(checksTotal), 'checks passed'));
    var wall = num(DATA.seconds);
    add(box, stat('duration', wall !== null ? fmtMs(wall * 1000) : fmtMs(sumMs), wall !== null ? 'duration' : 'total of durations'));
    var facts = el('div', 'facts');
    function fact(label, values) {
      var keys = Object.keys(values).sort();
      if (!keys.length) return;
      var f = add(el('span'), label + ': ');
      if (keys.length <= 4) add(f, el('b', null, keys.join(', ')));
      else {
        var d = el('details');
        add(d, add(el('summary'), el('b', null, keys.slice(0, 3).join(', ') + ' and ' + (keys.length - 3) + ' more')));
        add(d, el('pre', null, keys.join('\n')));
        add(f, d);
      }
      add(facts, f);
    }
    fact('backend', backends); fact('model', models); fact('pipeline', pipelines); fact('specs', specs);
    if (started !== null) {
      var when = new Date(started * 1000);
      var ran = add(el('span'), 'ran: ', el('b', null, when.toLocaleString()));
      ran.title = when.toISOString();
      add(facts, ran);
    }
    if (DATA.generated_at) add(facts, add(el('span'), 'report written: ', el('b', null, str(DATA.generated_at))));
    if (DATA.source) add(facts, add(el('span'), 'transcripts: ', el('b', null, str(DATA.source))));
    if (HAS_BASELINE) {
      var b = DATA.baseline, c = b.counts || {};
      add(facts, add(el('span'), 'baseline: ', el('b', null, str(b.label)), ' — ' + (c.changed || 0) + ' changed, ' +
        (c.unchanged || 0) + ' unchanged, ' + (c.added || 0) + ' added, ' + (c.removed || 0) + ' removed'));
    }
    box.parentNode.insertBefore(facts, box.nextSibling);
    document.title = title + ' — ' + (counts.passed || 0) + '/' + total + ' passed';

    var notices = document.getElementById('notices');
    var problems = arr(DATA.problems);
    if (problems.length) {
      var n = add(el('div', 'notice'), el('strong', null, problems.length + ' file' + (problems.length === 1 ? '' : 's') +
        ' could not be read and ' + (problems.length === 1 ? 'is' : 'are') + ' not in this report:'));
      var ul = el('ul');
      problems.forEach(function (p) { add(ul, el('li', null, str(p.path) + ': ' + str(p.message))); });
      add(notices, add(n, ul));
    }
    if (HAS_BASELINE && arr(DATA.baseline.removed).length) {
      var r = add(el('div', 'notice'), el('strong', null, 'In the baseline, not in this run:'));
      var ul2 = el('ul');
      arr(DATA.baseline.removed).forEach(function (d) {
        add(ul2, el('li', null, str(d.spec_file) + '  ' + str(d.name) + ' (was ' + str(d.old_verdict) + ')'));
      });
      add(notices, add(r, ul2));
    }
  }

  // ---- filters -----------------------------------------------------------------------------------------------
  var els = {};
  function renderFilters() {
    var bar = document.getElementById('filters');
    var counts = {};
    ROWS.forEach(function (r) { counts[r.verdict] = (counts[r.verdict] || 0) + 1; });
    var verdicts = Object.keys(counts).sort(function (a, b) {
      return (VERDICT_RANK[a] === undefined ? 9 : VERDICT_RANK[a]) - (VERDICT_RANK[b] === undefined ? 9 : VERDICT_RANK[b]);
    });
    els.chips = {};
    verdicts.forEach(function (v) {
      var chip = add(el('button', 'chip'), v, el('span', 'n', counts[v]));
      chip.type = 'button';
      chip.setAttribute('data-verdict', v);
      chip.setAttribute('aria-pressed', 'false');
      chip.title = 'Show only ' + v + ' conversations (several may be on)';
      chip.addEventListener('click', function () {
        state.verdicts[v] = !state.verdicts[v];
        chip.setAttribute('aria-pressed', String(!!state.verdicts[v]));
        state.page = 0; update();
      });
      els.chips[v] = chip;
      add(bar, chip);
    });
    var tags = {};
    ROWS.forEach(function (r) { r.tags.forEach(function (t) { tags[t] = (tags[t] || 0) + 1; }); });
    var tagNames = Object.keys(tags).sort();
    if (tagNames.length) {
      var sel = el('select');
      sel.id = 'tag-filter';
      sel.setAttribute('aria-label', 'Tag');
      add(sel, el('option', null, 'all tags')).value = '';
      tagNames.forEach(function (t) { var o = el('option', null, t + ' (' + tags[t] + ')'); o.value = t; add(sel, o); });
      sel.addEventListener('change', function () { state.tag = sel.value; state.page = 0; update(); });
      add(bar, sel);
    }
    var pipes = {};
    ROWS.forEach(function (r) { if (r.pipeline) pipes[r.pipeline] = 1; });
    if (Object.keys(pipes).length > 1) {
      var ps = el('select');
      ps.id = 'pipeline-filter';
      ps.setAttribute('aria-label', 'Pipeline');
      add(ps, el('option', null, 'all pipelines')).value = '';
      Object.keys(pipes).sort().forEach(function (p) { var o = el('option', null, p); o.value = p; add(ps, o); });
      ps.addEventListener('change', function () { state.pipeline = ps.value; state.page = 0; update(); });
      add(bar, ps);
    }
    if (HAS_BASELINE) {
      var lab = el('label');
      var cb = el('input');
      cb.type = 'checkbox'; cb.id = 'changed-only';
      cb.addEventListener('change', function () { state.changedOnly = cb.checked; state.page = 0; update(); });
      add(bar, add(lab, cb, ' changed only'));
    }
    var input = el('input');
    input.type = 'search'; input.id = 'text-filter';
    input.placeholder = 'Filter: name, spec path, reply text  ( / )';
    input.setAttribute('aria-label', 'Filter by text');
    var timer = null;
    input.addEventListener('input', function () {
      clearTimeout(timer);
      function apply() { state.text = input.value; state.page = 0; update(); }
      // a short pause before filtering many: typing into 10,000 conversations stays smooth
      if (ROWS.length > 2000) timer = setTimeout(apply, 150);
      else apply();
    });
    add(bar, input);
    els.count = el('span');
    els.count.id = 'match-count';
    add(bar, els.count);
  }

  function matches(r) {
    var anyVerdict = false;
    for (var v in state.verdicts) if (state.verdicts[v]) { anyVerdict = true; break; }
    if (anyVerdict && !state.verdicts[r.verdict]) return false;
    if (state.tag && r.tags.indexOf(state.tag) < 0) return false;
    if (state.pipeline && r.pipeline !== state.pipeline) return false;
    if (state.changedOnly && r.change !== 'changed' && r.change !== 'added') return false;
    if (state.text) {
      var words = state.text.toLowerCase().split(/\s+/).filter(Boolean), text = searchText(r);
      for (var i = 0; i < words.length; i++) if (text.indexOf(words[i]) < 0) return false;
    }
    return true;
  }

  function sortView() {
    var col = COLUMNS.filter(function (c) { return c.key === state.sort; })[0] || COLUMNS[0];
    var dir = state.dir;
    var keyed = view.map(function (r) { return [col.value(r), r.i, r]; });
    keyed.sort(function (a, b) {
      var x = a[0], y = b[0];
      if (x === null && y !== null) return 1;  // unknown values last, whichever the direction
      if (y === null && x !== null) return -1;
      if (x < y) return -dir;
      if (x > y) return dir;
      return a[1] - b[1];
    });
    view = keyed.map(function (k) { return k[2]; });
  }

  // ---- table ---------------------------------------------------------------------------------------------------
  function renderHead() {
    var head = document.getElementById('head');
    COLUMNS.forEach(function (c) {
      var th = el('th', c.num ? 'num' : null);
      th.setAttribute('data-key', c.key);
      th.setAttribute('aria-sort', 'none');
      var b = el('button', null, c.label);
      b.type = 'button';
      b.title = 'Sort by ' + c.label.toLowerCase();
      b.addEventListener('click', function () {
        if (state.sort === c.key) state.dir = -state.dir;
        else { state.sort = c.key; state.dir = c.num && c.key !== 'index' ? -1 : 1; }
        state.page = 0; update();
      });
      add(head, add(th, b));
    });
  }

  function rowNode(r) {
    var tr = document.createElement('tr');
    tr.setAttribute('data-index', r.i);
    tr.setAttribute('data-verdict', r.verdict);
    if (r.i === state.selected) tr.setAttribute('aria-selected', 'true');
    add(tr, el('td', 'num muted', r.i + 1));
    add(tr, add(el('td'), badge(r.verdict)));
    var name = add(el('td', 'name'), el('span', 'title', r.name));
    add(name, el('span', 'spec', r.spec));
    add(tr, name);
    add(tr, el('td', 'num', r.turns));
    var checks = el('td', 'num' + (r.failedChecks ? ' checks-bad' : ''), r.total ? r.passed + '/' + r.total : '—');
    add(tr, checks);
    add(tr, el('td', 'num', fmtMs(r.latency)));
    add(tr, el('td', 'num', fmtInt(r.tokens)));
    if (HAS_BASELINE) add(tr, el('td', 'delta ' + (r.change || ''), r.change || ''));
    return tr;
  }

  function renderRows() {
    var body = document.getElementById('rows');
    var pages = Math.max(1, Math.ceil(view.length / state.pageSize));
    if (state.page >= pages) state.page = pages - 1;
    var start = state.page * state.pageSize, end = Math.min(view.length, start + state.pageSize);
    var frag = document.createDocumentFragment();
    for (var k = start; k < end; k++) frag.appendChild(rowNode(view[k]));
    body.textContent = '';
    body.appendChild(frag);
    document.getElementById('empty').hidden = view.length > 0;
    els.count.textContent = view.length === ROWS.length ? ROWS.length.toLocaleString('en-US') + ' conversations'
      : view.length.toLocaleString('en-US') + ' of ' + ROWS.length.toLocaleString('en-US');
    var ths = document.querySelectorAll('#head th');
    for (var h = 0; h < ths.length; h++) {
      var key = ths[h].getAttribute('data-key');
      ths[h].setAttribute('aria-sort', key === state.sort ? (state.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    renderPager(pages, start, end);
  }

  function renderPager(pages, start, end) {
    var pager = document.getElementById('pager');
    pager.textContent = '';
    function btn(label, page, disabled, id) {
      var b = el('button', null, label);
      b.type = 'button'; b.disabled = disabled; b.id = id;
      b.addEventListener('click', function () { state.page = page; renderRows(); document.getElementById('table-wrap').scrollTop = 0; });
      return b;
    }
    add(pager, btn('« first', 0, state.page === 0, 'page-first'), btn('‹ prev', state.page - 1, state.page === 0, 'page-prev'));
    add(pager, el('span', null, view.length ? (start + 1) + '–' + end + ' of ' + view.length.toLocaleString('en-US') +
      ' (page ' + (state.page + 1) + ' of ' + pages + ')' : 'none'));
    add(pager, btn('next ›', state.page + 1, state.page >= pages - 1, 'page-next'), btn('last »', pages - 1, state.page >= pages - 1, 'page-last'));
    var size = el('select');
    size.id = 'page-size';
    size.setAttribute('aria-label', 'Rows per page');
    PAGE_SIZES.forEach(function (n) { var o = el('option', null, n + ' per page'); o.value = String(n); if (n === state.pageSize) o.selected = true; add(size, o); });
    size.addEventListener('change', function () { state.pageSize = +size.value; state.page = 0; renderRows(); });
    add(pager, size);
  }

  function update() {
    view = ROWS.filter(matches);
    sortView();
    renderRows();
  }

  // ---- one conversation as a chat ------------------------------------------------------------------------------
  function checkNode(c) {
    var judged = c.judged !== false;
    var cls = !judged ? 'notjudged' : c.passed ? 'pass' : 'fail';
    var node = el('div', 'check ' + cls);
    node.setAttribute('data-passed', String(!!c.passed));
    var top = el('div', 'top');
    add(top, el('span', 'mark', !judged ? '–' : c.passed ? '✓' : '✗'), el('span', 'type', str(c.type)));
    if (c.arg !== undefined && c.arg !== null) add(top, el('span', 'arg', str(c.arg)));
    if (c.implicit) add(top, el('span', 'implicit', 'implicit'));
    add(node, top);
    if (c.reason) add(node, el('div', 'reason', str(c.reason)));
    add(node, el('div', 'where', c.where ? str(c.where) : c.implicit ? 'implicit check (not written in the spec)' : ''));
    return node;
  }
  function sortedChecks(checks) {
    // failed checks first, then the ones that could not be judged, then those that passed; spec order within each
    return arr(checks).map(function (c, i) { return [c, i]; }).sort(function (a, b) {
      function rank(c) { return c.judged === false ? 1 : c.passed ? 2 : 0; }
      return rank(a[0]) - rank(b[0]) || a[1] - b[1];
    }).map(function (p) { return p[0]; });
  }
  function bubble(kind, who, text) {
    var b = el('div', 'bubble ' + kind);
    add(b, el('span', 'who', who));
    add(b, document.createTextNode(text));
    return b;
  }
  function step(label, sub, open) {
    var d = el('details', 'step');
    if (open) d.open = true;
    var s = add(el('summary'), el('span', 'label', label));
    if (sub) add(s, ' ', el('span', 'sub', sub));
    add(d, s);
    return d;
  }
  function outputLink(conv, output, id) {
    if (!output) return el('span', 'muted', 'file ' + id + ': not saved');
    if (!output.path) return el('span', 'muted', (output.kind === 'image' ? 'image ' : 'file ') + str(output.name) + ': ' + str(output.skipped || 'not saved'));
    var a = el('a', null, str(output.name) + (num(output.size) !== null ? ' (' + fmtInt(output.size) + ' bytes)' : ''));
    a.href = fileHref(conv.dir, output.path);
    a.rel = 'noopener noreferrer';
    return a;
  }
  function imageNode(conv, outputs, id) {
    var media = conv.media || {};
    var output = outputs[id];
    var wrap = el('div');
    if (safeImage(media[id])) {
      var img = el('img', 'code-image');
      img.alt = output ? str(output.name) : 'image ' + id;
      img.src = media[id];
      add(wrap, img);
    }
    add(wrap, outputLink(conv, output, id));
    return wrap;
  }

  function turnNode(conv, t, turn) {
    var checks = arr(turn.checks);
    var bad = !!turn.error || checks.some(function (c) { return !c.passed && c.judged !== false; });
    var sec = el('section', 'turn' + (bad ? ' bad' : ''));
    sec.id = 'turn-' + (turn.index + 1);
    sec.setAttribute('data-turn', String((num(turn.index) || 0) + 1));
    var head = add(el('div', 'turn-head'), el('strong', null, 'Turn ' + ((num(turn.index) || 0) + 1)));
    if (turn.skipped) add(head, el('span', null, 'not run'));
    else {
      if (turn.status) add(head, el('span', null, 'status ' + str(turn.status)));
      if (num(turn.latency_ms) !== null) add(head, el('span', null, fmtMs(turn.latency_ms)));
      if (turn.usage && num(turn.usage.total_tokens) !== null) {
        var u = el('span', null, fmtInt(turn.usage.total_tokens) + ' tokens');
        u.title = 'prompt ' + str(turn.usage.prompt_tokens) + ', completion ' + str(turn.usage.completion_tokens);
        add(head, u);
      }
      if (turn.run_id) add(head, el('span', 'mono', str(turn.run_id)));
    }
    var failedHere = checks.filter(function (c) { return !c.passed && c.judged !== false; }).length;
    if (checks.length) add(head, el('span', failedHere ? 'checks-bad' : null, (checks.length - failedHere) + '/' + checks.length + ' checks passed'));
    add(sec, head);
    var body = el('div', 'turn-body');
    var chat = el('div', 'chat');
    add(chat, bubble('user', 'user', str(turn.user)));
    arr(turn.attachments).forEach(function (a) {
      add(chat, el('div', 'step', 'attachment: ' + str(a.file_name || a.path || a.file_id)));
    });
    var outputs = {};
    arr(turn.outputs).forEach(function (o) { if (o && o.file_id) outputs[o.file_id] = o; });
    arr(turn.tool_calls).forEach(function (call) {
      var d = step('tool call ' + str(call.name), call.output === null || call.output === undefined ? 'no output' : '', true);
      d.setAttribute('data-kind', 'tool-call');
      add(d, el('div', 'sub', 'arguments'), el('pre', null, pretty(call.arguments)));
      add(d, el('div', 'sub', 'output'), el('pre', null, call.output === null || call.output === undefined ? '(none)' : pretty(call.output)));
      add(chat, d);
    });
    arr(turn.searches).forEach(function (s) {
      var results = arr(s.results);
      var d = step('file_search', arr(s.queries).map(str).join(' · ') + ' — ' + results.length + ' result' + (results.length === 1 ? '' : 's'), false);
      d.setAttribute('data-kind', 'file-search');
      arr(s.queries).forEach(function (q) { add(d, add(el('div'), el('span', 'sub', 'query '), str(q))); });
      results.forEach(function (r) {
        var row = add(el('div', 'result'), el('strong', null, str(r.file_name || r.file_id)), ' ');
        if (num(r.score) !== null) add(row, el('span', 'score', 'score ' + r.score.toFixed(3)));
        if (r.text) add(row, el('pre', null, str(r.text)));
        add(d, row);
      });
      add(chat, d);
    });
    arr(turn.code_runs).forEach(function (run, n) {
      var d = step('code run ' + (n + 1), run.logs ? '' : 'no logs', true);
      d.setAttribute('data-kind', 'code-run');
      add(d, el('div', 'sub', 'code'), el('pre', null, str(run.input)));
      if (run.logs) add(d, el('div', 'sub', 'logs'), el('pre', null, str(run.logs)));
      arr(run.images).forEach(function (id) { add(d, imageNode(conv, outputs, id)); });
      add(chat, d);
    });
    if (turn.skipped) add(chat, el('div', 'bubble assistant none', 'Not run: the conversation stopped at an earlier turn.'));
    else {
      var reply = str(turn.reply);
      var b = bubble('assistant' + (reply ? '' : ' none'), 'assistant', reply || '(empty reply)');
      b.setAttribute('data-kind', 'reply');
      add(chat, b);
    }
    var shown = {};
    arr(turn.code_runs).forEach(function (run) { arr(run.images).forEach(function (id) { shown[id] = 1; }); });
    arr(turn.images).forEach(function (id) { if (!shown[id]) { shown[id] = 1; add(chat, imageNode(conv, outputs, id)); } });
    arr(turn.files).forEach(function (f) {
      if (f && !shown[f.file_id]) { shown[f.file_id] = 1; add(chat, add(el('div', 'step'), 'file: ', outputLink(conv, outputs[f.file_id], f.file_id))); }
    });
    if (arr(turn.citations).length) {
      var cites = add(el('div', 'step'), el('span', 'label', 'citations '));
      arr(turn.citations).forEach(function (c, k) {
        if (k) add(cites, ', ');
        add(cites, el('strong', null, str(c.file_name || c.file_id)), ' ', el('span', 'mono', str(c.text)));
      });
      cites.setAttribute('data-kind', 'citations');
      add(chat, cites);
    }
    if (turn.last_error) add(chat, el('div', 'turn-error', 'Run error: ' + str(turn.last_error.code) + ': ' + str(turn.last_error.message)));
    if (turn.incomplete_details) add(chat, el('div', 'turn-error', 'Incomplete: ' + str(turn.incomplete_details)));
    if (turn.error) add(chat, el('div', 'turn-error', 'Runner error: ' + str(turn.error)));
    var side = el('div', 'checks');
    sortedChecks(checks).forEach(function (c) { add(side, checkNode(c)); });
    if (!checks.length) add(side, el('div', 'muted', 'no checks'));
    add(body, chat, side);
    return add(sec, body);
  }

  function diffNode(d) {
    var box = add(el('div', 'box changes'), el('h3', null, 'Since the baseline: ' + str(d.status)));
    box.setAttribute('data-kind', 'baseline');
    if (d.status === 'added') add(box, el('div', null, 'new in this run (' + str(d.new_verdict) + ')'));
    if (d.old_verdict !== d.new_verdict && d.status === 'changed') {
      add(box, add(el('div'), 'verdict: ', badge(str(d.old_verdict)), ' → ', badge(str(d.new_verdict))));
    }
    if (arr(d.checks).length) {
      var ul = el('ul');
      arr(d.checks).forEach(function (c) { add(ul, el('li', null, str(c))); });
      add(box, el('div', 'sub', 'checks'), ul);
    }
    arr(d.replies).forEach(function (r) {
      add(box, el('div', 'sub', 'turn ' + str(r.turn) + ' reply'));
      var pre = el('div', 'diff');
      arr(r.diff).forEach(function (line) {
        line = str(line);
        add(pre, el('span', line.charAt(0) === '+' ? 'add' : line.charAt(0) === '-' ? 'del' : 'ctx', line));
      });
      add(box, pre);
    });
    if (d.status === 'unchanged') add(box, el('div', 'muted', 'same verdict, checks and replies as in the baseline'));
    return box;
  }

  function renderDetail(i) {
    var pane = document.getElementById('detail');
    pane.textContent = '';
    if (i >= 0 && !CONVS) {  // opened before the transcripts were read: shown once they are
      pendingOpen = i;
      add(pane, el('p', 'placeholder', 'Reading the transcripts…'));
      return;
    }
    if (i < 0 || i >= ROWS.length) {
      add(pane, el('p', 'placeholder', 'Select a conversation to see its turns, tool calls and checks.'));
      return;
    }
    var conv = CONVS[i], t = conv.transcript || {}, row = ROWS[i];
    var head = add(el('div', 'conv-head'), badge(row.verdict), el('h2', null, row.name));
    var tools = el('div', 'tools');
    if (conv.path && !conv.not_run) {
      var json = el('a', null, 'JSON');
      json.href = fileHref(conv.dir, conv.path.split('/').pop());
      json.title = 'the transcript this view shows';
      var md = el('a', null, 'Markdown');
      md.href = fileHref(conv.dir, conv.path.split('/').pop().replace(/\.json$/, '.md'));
      add(tools, json, md);
    }
    var wide = el('button', null, document.body.classList.contains('wide') ? 'show list' : 'hide list');
    wide.type = 'button';
    wide.addEventListener('click', function () {
      document.body.classList.toggle('wide');
      wide.textContent = document.body.classList.contains('wide') ? 'show list' : 'hide list';
    });
    var close = el('button', null, 'close');
    close.type = 'button';
    close.title = 'Esc';
    close.addEventListener('click', function () { select(-1); });
    add(head, add(tools, wide, close));
    add(pane, head);
    var meta = el('dl', 'kv');
    function kv(k, v) { if (v !== '' && v !== null && v !== undefined) add(meta, el('dt', null, k), el('dd', null, v)); }
    kv('spec', row.spec);
    kv('case', row.caseLabel);
    if (row.tags.length) { var tagsDd = el('dd'); row.tags.forEach(function (x) { add(tagsDd, el('span', 'tag', x)); }); add(meta, el('dt', null, 'tags'), tagsDd); }
    kv('pipeline', row.pipeline);
    kv('model', str(t.model));
    var b = t.backend || {};
    kv('backend', str(b.kind) + (b.base_url ? ' (' + str(b.base_url) + ')' : '') + (b.provider ? ', provider ' + str(b.provider) : ''));
    if (num(t.duration_ms)) kv('duration', fmtMs(t.duration_ms));
    if (num(t.started_at)) kv('started', new Date(t.started_at * 1000).toLocaleString());
    kv('thread', str(t.thread_id));
    if (arr(t.files).length) kv('files', arr(t.files).map(function (f) { return str(f.path || f.file_name || f.file_id); }).join(', '));
    if (t.description) kv('about', str(t.description));
    add(pane, meta);
    if (t.assistant) {
      var det = add(el('details', 'meta'), el('summary', null, 'assistant: ' + str(t.assistant.name || t.assistant.model || t.assistant_id)));
      add(det, el('pre', null, pretty(t.assistant)));
      add(pane, det);
    }
    if (t.error) {
      var err = add(el('div', 'conv-error'), el('strong', null, row.verdict === 'skipped' ? 'Not run: ' : 'Conversation error: '), str(t.error));
      err.setAttribute('data-kind', 'conversation-error');
      add(pane, err);
    }
    if (conv.diff) add(pane, diffNode(conv.diff));
    // every failure, in one place at the top, each a link to its turn
    var failures = [];
    arr(t.turns).forEach(function (turn) {
      var n = (num(turn.index) || 0) + 1;
      if (turn.error) failures.push([n, 'error', str(turn.error), '']);
      arr(turn.checks).forEach(function (c) {
        if (!c.passed && c.judged !== false && !(c.implicit && turn.error)) failures.push([n, str(c.type), str(c.reason), str(c.where)]);
      });
    });
    var convChecks = arr(t.conversation_checks);
    convChecks.forEach(function (c) { if (!c.passed && c.judged !== false) failures.push([0, str(c.type), str(c.reason), str(c.where)]); });
    if (failures.length) {
      var fbox = add(el('div', 'box failures'), el('h3', null, failures.length + ' failure' + (failures.length === 1 ? '' : 's')));
      fbox.setAttribute('data-kind', 'failures');
      var ul = el('ul');
      failures.forEach(function (f) {
        var li = el('li');
        if (f[0]) {
          var a = el('a', null, 'turn ' + f[0]);
          a.href = '#turn-' + f[0];
          a.addEventListener('click', function (ev) {
            ev.preventDefault();
            var target = document.getElementById('turn-' + f[0]);
            if (target) target.scrollIntoView({ block: 'start' });
          });
          add(li, a, ' ');
        } else add(li, 'conversation ');
        add(li, el('strong', null, f[1]), ': ' + f[2]);
        if (f[3]) add(li, ' ', el('span', 'mono muted', f[3]));
        add(ul, li);
      });
      add(pane, add(fbox, ul));
    }
    if (convChecks.length) {
      var cbox = add(el('div', 'box'), el('h3', null, 'checks on the whole conversation'));
      var list = el('div', 'checks');
      sortedChecks(convChecks).forEach(function (c) { add(list, checkNode(c)); });
      add(pane, add(cbox, list));
    }
    var frag = document.createDocumentFragment();
    arr(t.turns).forEach(function (turn) { frag.appendChild(turnNode(conv, t, turn)); });
    pane.appendChild(frag);
    if (!arr(t.turns).length && !t.error) add(pane, el('p', 'muted', 'This conversation has no turns.'));
    pane.scrollTop = 0;
  }

  function select(i, fromHash) {
    state.selected = i;
    var old = document.querySelector('#rows tr[aria-selected=true]');
    if (old) old.removeAttribute('aria-selected');
    var tr = document.querySelector('#rows tr[data-index="' + i + '"]');
    if (tr) { tr.setAttribute('aria-selected', 'true'); if (!fromHash) tr.scrollIntoView({ block: 'nearest' }); }
    renderDetail(i);
    var hash = i >= 0 ? '#c' + (i + 1) : '#';
    if (location.hash !== hash && !(i < 0 && !location.hash)) history.replaceState(null, '', hash);
  }
  function move(step) {
    var pos = -1;
    for (var k = 0; k < view.length; k++) if (view[k].i === state.selected) { pos = k; break; }
    var next = Math.max(0, Math.min(view.length - 1, pos + step));
    if (!view.length) return;
    var page = Math.floor(next / state.pageSize);
    if (page !== state.page) { state.page = page; renderRows(); }
    select(view[next].i);
  }

  // ---- start -------------------------------------------------------------------------------------------------
  renderSummary();
  renderFilters();
  renderHead();
  update();
  document.getElementById('rows').addEventListener('click', function (ev) {
    var tr = ev.target.closest('tr[data-index]');
    if (tr) select(+tr.getAttribute('data-index'));
  });
  document.addEventListener('keydown', function (ev) {
    var typing = ev.target && (ev.target.tagName === 'INPUT' || ev.target.tagName === 'SELECT' || ev.target.tagName === 'TEXTAREA');
    if (ev.key === 'Escape') { if (typing) ev.target.blur(); else select(-1); return; }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === 'j' || ev.key === 'ArrowDown') { ev.preventDefault(); move(1); }
    else if (ev.key === 'k' || ev.key === 'ArrowUp') { ev.preventDefault(); move(-1); }
    else if (ev.key === '/') { ev.preventDefault(); document.getElementById('text-filter').focus(); }
  });
  function fromHash() {
    var m = /^#c(\d+)$/.exec(location.hash);
    if (m && +m[1] >= 1 && +m[1] <= ROWS.length) select(+m[1] - 1, true);
  }
  window.addEventListener('hashchange', fromHash);
  fromHash();

  // for tests and the benchmark: when the table was first rendered, and a synchronous way to filter
  function loadTranscripts() {
    var node = document.getElementById('runner-data');
    CONVS = node ? arr(JSON.parse(node.textContent).conversations) : [];
    LOADED_AT = performance.now();
    window.runnerReport.loadedAt = LOADED_AT;
    if (state.text) { ROWS.forEach(function (r) { r.text = null; }); update(); }  // now with the replies
    if (pendingOpen >= 0 && state.selected === pendingOpen) renderDetail(pendingOpen);
    document.documentElement.setAttribute('data-loaded', 'true');
  }
  window.runnerReport = {
    readyAt: performance.now(), scriptAt: STARTED, parsedAt: PARSED, loadedAt: null,
    rows: function () { return view.length; },
    filter: function (options) {
      var t0 = performance.now();
      if (options.text !== undefined) { state.text = options.text; document.getElementById('text-filter').value = options.text; }
      if (options.tag !== undefined) state.tag = options.tag;
      state.page = 0;
      update();
      return performance.now() - t0;
    },
    open: function (i) { var t0 = performance.now(); select(i); return performance.now() - t0; }
  };
  document.documentElement.setAttribute('data-ready', 'true');
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', loadTranscripts);
  else loadTranscripts();
})();
