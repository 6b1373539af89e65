/* covnet report: sorting, directory filter, machine filter. No framework,
 * no network. Marks <html data-covnet-js="ok"> when it initialised cleanly
 * (the end-to-end test reads that marker from the DOM). */
(function () {
  'use strict';
  var doc = document;
  var root = doc.documentElement;
  window.addEventListener('error', function (e) {
    root.setAttribute('data-covnet-js', 'error: ' + (e && e.message));
  });

  function nums(s) { return s.split(',').map(function (v) { return v === '-' ? null : Number(v); }); }
  function tenths(h, f) { return f > 0 ? Math.floor(h * 1000 / f) : null; }
  function pctText(h, f) { var t = tenths(h, f); return t === null ? 'n/a' : Math.floor(t / 10) + '.' + (t % 10) + '%'; }
  function level(h, f) { var t = tenths(h, f); return t === null ? 'none' : t >= 900 ? 'hi' : t >= 750 ? 'med' : 'lo'; }
  function all(sel, el) { return Array.prototype.slice.call((el || doc).querySelectorAll(sel)); }

  /* ---- machine selection (?m=<index>) ---- */
  function machineFromUrl() {
    var m = /[?&]m=(\d+)/.exec(window.location.search);
    return m ? m[1] : '';
  }
  function keepMachineInLinks(m) {
    all('a.keep-m').forEach(function (a) {
      var href = a.getAttribute('href');
      var hash = '';
      var i = href.indexOf('#');
      if (i >= 0) { hash = href.slice(i); href = href.slice(0, i); }
      href = href.replace(/\?.*$/, '');
      a.setAttribute('href', href + (m === '' ? '' : '?m=' + m) + hash);
    });
  }

  /* A scope element carries data-s="lh,lf,fh,ff,bh,bf" (combined) and
   * data-c="…|…" (one group per machine); its [data-f] descendants show
   * one metric each: l/f/b + p (percent), n (hit/total), b (bar). */
  function applyTotals(m) {
    all('[data-s]').forEach(function (scope) {
      var v = m === '' ? nums(scope.getAttribute('data-s'))
        : nums((scope.getAttribute('data-c') || '').split('|')[Number(m)] || scope.getAttribute('data-s'));
      all('[data-f]', scope).forEach(function (el) {
        var f = el.getAttribute('data-f');
        var k = 'lfb'.indexOf(f.charAt(0));
        if (k < 0) { return; }
        var h = v[2 * k], t = v[2 * k + 1];
        var kind = f.charAt(1);
        if (kind === 'p') {
          el.textContent = pctText(h, t);
          el.setAttribute('data-v', t > 0 ? String(tenths(h, t)) : '-1');
          el.className = el.className.replace(/\b(hi|med|lo|none)\b/g, '').trim() + ' ' + level(h, t);
        } else if (kind === 'n') {
          el.textContent = h + '/' + t;
        } else if (kind === 'b') {
          var t10 = tenths(h, t);
          el.style.width = (t10 === null ? 0 : Math.floor(t10 / 10)) + '%';
          el.className = level(h, t);
        }
      });
    });
  }

  function applySource(m) {
    all('table.src tbody tr[data-c]').forEach(function (tr) {
      var c = tr.querySelector('td.c');
      if (!tr.hasAttribute('data-n') && c) { tr.setAttribute('data-n', c.textContent); }
      var count = m === '' ? Number(tr.getAttribute('data-n')) : nums(tr.getAttribute('data-c'))[Number(m)];
      var partial = m === '' && tr.getAttribute('data-u') === '1';
      all('.br', tr).forEach(function (b) {
        var taken = m === '' ? nums(b.getAttribute('data-t'))[0] : nums(b.getAttribute('data-c'))[Number(m)];
        if (taken === null || taken === undefined) { b.className = 'br x'; b.textContent = '\u2013'; }
        else if (taken > 0) { b.className = 'br t'; b.textContent = '\u2713' + taken; }
        else { b.className = 'br n'; b.textContent = '\u2717' + taken; }
        if (!(taken > 0)) { partial = true; }
      });
      var cls = count > 0 ? (partial ? 'p' : 'h') : 'm';
      var unique = tr.classList.contains('u');
      tr.className = cls + (unique ? ' u' : '');
      if (c) { c.textContent = String(count); }
      var k = tr.querySelector('td.k');
      if (k) {
        k.textContent = cls === 'h' ? '\u2713' : cls === 'p' ? '\u25D0' : '\u2717';
        k.title = cls === 'h' ? 'hit' : cls === 'p' ? 'partly hit' : 'not hit';
      }
    });
    all('table.fns tbody tr[data-c]').forEach(function (tr) {
      var calls = m === '' ? Number(tr.getAttribute('data-n')) : nums(tr.getAttribute('data-c'))[Number(m)];
      var c = tr.querySelector('td.calls'); if (c) { c.textContent = String(calls); c.setAttribute('data-v', String(calls)); }
      var k = tr.querySelector('.fk'); if (k) { k.textContent = calls > 0 ? '\u2713' : '\u2717'; k.className = 'fk k ' + (calls > 0 ? 'h' : 'm'); }
    });
  }

  function applyMachine(m) {
    applyTotals(m);
    applySource(m);
    keepMachineInLinks(m);
    var label = doc.getElementById('view-label');
    var sel = doc.getElementById('machine');
    if (label && sel) { label.textContent = sel.options[sel.selectedIndex].text; }
    root.setAttribute('data-machine', m === '' ? 'all' : m);
  }

  function initMachine() {
    var sel = doc.getElementById('machine');
    if (!sel) { return; }
    var m = machineFromUrl();
    if (m !== '' && !sel.querySelector('option[value="' + m + '"]')) { m = ''; }
    sel.value = m;
    sel.addEventListener('change', function () {
      var v = sel.value;
      if (window.history && window.history.replaceState) {
        try { window.history.replaceState(null, '', window.location.pathname + (v === '' ? '' : '?m=' + v) + window.location.hash); } catch (e) { /* file:// may refuse */ }
      }
      applyMachine(v);
    });
    if (m !== '') { applyMachine(m); }
    var uniq = doc.getElementById('only-unique');
    if (uniq) {
      uniq.addEventListener('change', function () { doc.body.classList.toggle('only-unique', uniq.checked); });
    }
  }

  /* ---- sortable tables ---- */
  function sortKey(td, numeric) {
    if (!td) { return numeric ? -Infinity : ''; }
    var v = td.getAttribute('data-v');
    if (numeric) { return v === null ? Number(td.textContent) : Number(v); }
    return (v === null ? td.textContent : v).toLowerCase();
  }
  function initSorting() {
    all('table.sortable').forEach(function (table) {
      var heads = all('thead th', table);
      heads.forEach(function (th, col) {
        if (!th.hasAttribute('data-sort')) { return; }
        th.setAttribute('tabindex', '0');
        var go = function () {
          var numeric = th.getAttribute('data-sort') === 'num';
          var asc = th.getAttribute('aria-sort') !== 'ascending';
          heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
          th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
          var body = table.tBodies[0];
          var rows = Array.prototype.slice.call(body.rows);
          rows.sort(function (a, b) {
            var x = sortKey(a.cells[col], numeric), y = sortKey(b.cells[col], numeric);
            var r = x < y ? -1 : x > y ? 1 : 0;
            return asc ? r : -r;
          });
          rows.forEach(function (r) { body.appendChild(r); });
        };
        th.addEventListener('click', go);
        th.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); go(); } });
      });
    });
  }

  /* ---- directory filter on the index ---- */
  function initDirs() {
    var info = doc.getElementById('dir-filter');
    var files = all('#files tbody tr');
    if (!info || files.length === 0) { return; }
    function show(dir) {
      all('tr.dir').forEach(function (r) { r.classList.toggle('active', dir !== null && r.getAttribute('data-dir') === dir); });
      var n = 0;
      files.forEach(function (r) {
        var d = r.getAttribute('data-dir');
        var on = dir === null || dir === '' || d === dir || d.indexOf(dir + '/') === 0;
        r.style.display = on ? '' : 'none';
        if (on) { n += 1; }
      });
      info.hidden = dir === null || dir === '';
      var name = doc.getElementById('dir-filter-name');
      if (name) { name.textContent = dir || ''; }
      var count = doc.getElementById('dir-filter-count');
      if (count) { count.textContent = String(n); }
    }
    all('a.dirlink').forEach(function (a) {
      a.addEventListener('click', function () { show(a.getAttribute('data-dir')); });
    });
    var clear = doc.getElementById('dir-filter-clear');
    if (clear) { clear.addEventListener('click', function () { show(null); }); }
  }

  /* Clicking a line number links to that line. */
  function initLineLinks() {
    var table = doc.getElementById('source');
    if (!table) { return; }
    table.addEventListener('click', function (e) {
      var td = e.target;
      if (td && td.tagName === 'TD' && td.cellIndex === 0 && td.parentNode.id) {
        window.location.hash = td.parentNode.id;
      }
    });
  }

  /* ---- folding the directory tree ---- */
  function initTree() {
    var rows = all('#dirs tbody tr.dir');
    if (rows.length === 0) { return; }
    function depth(r) { return Number(r.getAttribute('data-depth')); }
    /* Shows or hides the rows below `i`, honouring folded subtrees. */
    function layout() {
      var hideBelow = Infinity;
      rows.forEach(function (r) {
        var d = depth(r);
        if (d <= hideBelow) { hideBelow = Infinity; }
        r.hidden = d > hideBelow;
        if (!r.hidden) {
          var b = r.querySelector('button.tw');
          if (b && b.getAttribute('aria-expanded') === 'false') { hideBelow = d; }
        }
      });
    }
    rows.forEach(function (r) {
      var b = r.querySelector('button.tw');
      if (!b) { return; }
      /* Big trees start folded below the first two levels. */
      if (rows.length > 40 && depth(r) >= 1) { b.setAttribute('aria-expanded', 'false'); b.textContent = '\u25B8'; }
      b.addEventListener('click', function () {
        var open = b.getAttribute('aria-expanded') !== 'true';
        b.setAttribute('aria-expanded', open ? 'true' : 'false');
        b.textContent = open ? '\u25BE' : '\u25B8';
        layout();
      });
    });
    layout();
  }

  function init() {
    initTree();
    initLineLinks();
    initSorting();
    initDirs();
    initMachine();
    if (!root.hasAttribute('data-covnet-js')) { root.setAttribute('data-covnet-js', 'ok'); }
  }
  if (doc.readyState === 'loading') { doc.addEventListener('DOMContentLoaded', init); } else { init(); }
}());
