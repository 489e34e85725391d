#!/usr/bin/env bash
# `patron clv fit`: the published CDNOW BG/NBD + Gamma-Gamma estimates from the summary
# file, the same fit from the CDNOW event log imported as an order-level file with
# --now 1997-09-30, BG/BB on the donations matrix, and clear errors (exit 2, nothing
# fitted) for summary files with bad rows.
set -euo pipefail
P=${PATRON_BIN:?}
D=${PATRON_SHARED_DATA:?}
[ -f "$D/cdnow/cdnowElog.csv" ] || { echo "skip: CDNOW data missing"; exit 0; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$P" --json clv fit --summary "$D/cdnow/cdnow_cbs_btyd.csv" --unit week \
    --map frequency=x,recency=t_x,T=T_cal,monetary_value=m_x > "$T/summary.json"
"$P" --db "$T/cd.db" --quiet import orders "$D/cdnow/cdnowElog.csv" --map member_id=masterid,ts=date,amount=sales
"$P" --db "$T/cd.db" --now 1997-09-30 --json clv fit --unit week > "$T/events.json"
"$P" --db "$T/cd.db" --now 1998-06-30 --json clv validate --split 1997-09-30 --unit week \
    --html "$T/validate.html" > "$T/validate.json"
set +e; "$P" --db "$T/cd.db" --now 1998-06-30 clv validate --split 1997-09-30 \
    --html "$T/no/such/dir/v.html" > /dev/null 2> "$T/html.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "no/such/dir/v.html" "$T/html.err"
"$P" --json clv fit --model bgbb --summary "$D/donations_bgbb/donations_rf_matrix_btyd.csv" \
    --map x=x,t_x=t_x,n=n_cal,count=custs > "$T/bgbb.json"
/usr/bin/python3 - "$T" "$D" <<'PY'
import json, sys
t = sys.argv[1]
s = json.load(open(t + '/summary.json'))
e = json.load(open(t + '/events.json'))
b = json.load(open(t + '/bgbb.json'))
def rel(got, want, tol, what):
    assert abs(got - want) <= tol * abs(want), (what, got, want)
# Fader, Hardie & Lee (2005): r, alpha, a, b, LL; Gamma-Gamma p, q, gamma, LL.
for k, v in dict(r=0.2426, alpha=4.4136, a=0.7929, b=2.4259).items():
    rel(s[k], v, 1e-3, k); rel(e[k], v, 1e-3, 'events ' + k)
assert abs(s['loglik'] + 9582.43) < 5e-3 and abs(e['loglik'] + 9582.43) < 5e-3, (s, e)
for k, v in dict(p=6.24957, q=3.74422, gamma=15.44352).items():
    rel(s[k], v, 1e-3, k); rel(e[k], v, 1e-3, 'events ' + k)
assert abs(s['gg_loglik'] + 4055.9177) < 1e-3 and abs(e['gg_loglik'] + 4055.9177) < 1e-3
# The event log gives the same customers, so the same fit.
for k in ('r', 'alpha', 'a', 'b', 'loglik', 'p', 'q', 'gamma', 'gg_loglik'):
    rel(e[k], s[k], 1e-4, 'events vs summary ' + k)
assert e['customers'] == s['customers'] == 2357 and e['repeat_customers'] == 946
for k, v in dict(alpha=1.204, beta=0.750, gamma=0.657, delta=2.783).items():
    rel(b[k], v, 1e-3, k)
assert abs(b['loglik'] + 33225.58) < 5e-3
print('clv: CDNOW summary and event log, donations: published estimates reproduced')
# Calibration/holdout (BTYD vignette): bins, holdout means, the weekly tracking curve.
v = json.load(open(t + '/validate.json'))
assert v['holdout'] == 39 and v['customers'] == 2357 and v['actual_total'] == 1882
n = [1411, 439, 214, 100, 62, 38, 29, 64]
act = [0.2367116, 0.6970387, 1.392523, 1.560000, 2.532258, 2.947368, 3.862069, 6.359375]
exp = [0.2250893, 0.5231364, 1.044126, 1.520256, 2.163824, 2.653789, 3.503957, 6.157036]
for b, row in enumerate(v['bins']):
    assert row['customers'] == n[b], row
    assert abs(row['actual'] - act[b]) < 1e-6, row
    rel(row['expected'], exp[b], 3e-3, 'holdout expected x=%d' % b)  # MLE vs BTYD params
import csv
track = {int(r['week']): int(r['cum_repeat_transactions'])
         for r in csv.DictReader(open(sys.argv[2] + '/cdnow/cdnow_weekly_cum_repeat_tracking.csv'))}
assert len(v['tracking']) == 78
for p in v['tracking']:
    assert p['actual'] == track[p['period']], (p, track[p['period']])
for w, e in zip(range(20, 26), [1312.458, 1387.346, 1460.392, 1531.713, 1601.418, 1669.6]):
    rel(v['tracking'][w - 1]['expected'], e, 1e-3, 'tracking week %d' % w)
print('clv validate: CDNOW holdout table and 78-week tracking curve reproduced')
# The HTML page: well-formed, self-contained, two charts, the curve and the table in it.
from html.parser import HTMLParser
class Page(HTMLParser):
    def __init__(self):
        super().__init__(); self.stack = []; self.svgs = 0; self.lines = []; self.cells = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ('meta', 'line', 'polyline', 'br'): self.stack.append(tag)
        self.svgs += tag == 'svg'
        assert not any(k in ('src', 'href') for k in a), (tag, a)
        if tag == 'polyline': self.lines.append((a['class'], a['points'].split()))
    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
    def handle_endtag(self, tag):
        if tag in ('line', 'polyline'): return
        assert self.stack and self.stack.pop() == tag, tag
    def handle_data(self, d):
        if self.stack and self.stack[-1] == 'td': self.cells.append(d)
html = open(t + '/validate.html').read()
assert '<script' not in html and 'http' not in html
pg = Page(); pg.feed(html); pg.close()
assert pg.stack == [] and pg.svgs == 2, (pg.stack, pg.svgs)
kinds = [c for c, _ in pg.lines]
assert kinds == ['actual', 'expected', 'actual', 'expected'], kinds
assert len(pg.lines[0][1]) == 79 and len(pg.lines[1][1]) == 79  # (0,0) + 78 weeks
assert len(pg.lines[2][1]) == 8
rows = [pg.cells[i:i + 4] for i in range(0, len(pg.cells), 4)]
assert [int(r[1]) for r in rows] == n, rows
print('clv validate --html: a self-contained page with both charts and the table')
PY
# Bad summary rows: a clear message naming file, line and column; exit 2; no output.
printf 'frequency,recency,T\n1,2,10\n2,x3,10\n' > "$T/bad1.csv"
printf 'frequency,recency,T\n1,2,10\n2,12,10\n' > "$T/bad2.csv"
printf 'frequency,T\n1,10\n' > "$T/bad3.csv"
printf 'x,t_x,n,count\n2,1,6,10\n' > "$T/bad4.csv"
check() { # file expected-message [extra args]
    local f=$1 msg=$2; shift 2
    set +e; "$P" clv fit --summary "$f" "$@" > "$T/out" 2> "$T/err"; local rc=$?; set -e
    [ $rc -eq 2 ] || { echo "exit $rc for $f"; cat "$T/err"; exit 1; }
    [ ! -s "$T/out" ] || { echo "output for a bad file"; exit 1; }
    grep -qF "$msg" "$T/err" || { echo "want '$msg', got:"; cat "$T/err"; exit 1; }
}
check "$T/bad1.csv" "bad1.csv:3: column 'recency': cannot parse 'x3' as a number"
check "$T/bad2.csv" "bad2.csv:3: column 'recency': recency 12 is greater than T 10"
check "$T/bad3.csv" "bad3.csv:1: missing required column 'recency'"
check "$T/bad4.csv" "bad4.csv:2: column 'x': x 2 is greater than t_x 1" --model bgbb
set +e; "$P" clv fit --summary "$T/missing.csv" 2>/dev/null; rc=$?; set -e
[ $rc -eq 3 ]
set +e; "$P" clv fit --summary "$T/bad1.csv" --map freq=x 2>/dev/null; rc=$?; set -e
[ $rc -eq 1 ]
echo "clv: bad summaries refused"
