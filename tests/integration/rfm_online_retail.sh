#!/usr/bin/env bash
# RFM on UCI Online Retail at --now 2011-12-10: every member's R, F, M, score and
# segment from `patron rfm --members` equal those computed here, independently, from the
# raw rows (Python: SPEC §2 order semantics, SPEC §4.1 formula and grid); the segment
# table adds up.
set -euo pipefail
P=${PATRON_BIN:?}
DATA=${PATRON_SHARED_DATA:?}/online_retail/online_retail.csv.gz
[ -f "$DATA" ] || { echo "skip: $DATA missing"; exit 0; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MAP=order_id=InvoiceNo,member_id=CustomerID,ts=InvoiceDate,sku=StockCode,qty=Quantity,price=UnitPrice
"$P" --db "$T/p.db" --now 2011-12-10 --quiet import orders "$DATA" --map "$MAP" --max-errors 10 \
    --rejects "$T/rejects.csv" 2>/dev/null
"$P" --db "$T/p.db" --now 2011-12-10 rfm --members > "$T/rfm.csv"
"$P" --db "$T/p.db" --now 2011-12-10 --json rfm > "$T/table.json"
/usr/bin/python3 - "$DATA" "$T/rfm.csv" "$T/table.json" <<'PY'
import csv, gzip, json, sys, datetime
from decimal import Decimal
now = datetime.datetime(2011, 12, 10)
orders = {}
for r in csv.DictReader(gzip.open(sys.argv[1], 'rt', encoding='utf-8', newline='')):
    if Decimal(r['UnitPrice']) < 0:
        continue  # the two bad rows, rejected by the import
    o = orders.setdefault(r['InvoiceNo'], {'m': r['CustomerID'], 'ts': None, 'amt': Decimal(0), 'pos': False})
    ts = datetime.datetime.strptime(r['InvoiceDate'], '%Y-%m-%d %H:%M:%S')
    o['ts'] = ts if o['ts'] is None or ts < o['ts'] else o['ts']
    o['amt'] += int(r['Quantity']) * Decimal(r['UnitPrice'])
    o['pos'] |= int(r['Quantity']) > 0
mem = {}
for o in orders.values():
    if not o['m']:
        continue
    e = mem.setdefault(o['m'], [0, Decimal(0), None])
    e[1] += o['amt']          # monetary: net of returns
    if o['pos']:              # an order (some positive rows); all-negative = a return
        e[0] += 1
        e[2] = o['ts'] if e[2] is None or o['ts'] > e[2] else e[2]
pop = {m: (int((now - e[2]).total_seconds()), e[0], e[1]) for m, e in mem.items() if e[0] > 0}
n = len(pop)
assert n == 4339, n
def scores(vals, smaller_better):
    # 1 + floor(5 * (number strictly worse) / n), capped at 5, by counting in sorted order
    s = sorted(vals)
    import bisect
    out = {}
    for v in set(vals):
        worse = (n - bisect.bisect_right(s, v)) if smaller_better else bisect.bisect_left(s, v)
        out[v] = min(5, 1 + (5 * worse) // n)
    return out
ids = list(pop)
R = scores([pop[m][0] for m in ids], True)
F = scores([pop[m][1] for m in ids], False)
M = scores([pop[m][2] for m in ids], False)
grid = {5: ['New Customers', 'Potential Loyalists', 'Potential Loyalists', 'Champions', 'Champions'],
        4: ['Promising', 'Potential Loyalists', 'Potential Loyalists', 'Loyal Customers', 'Loyal Customers'],
        3: ['About to Sleep', 'About to Sleep', 'Need Attention', 'Loyal Customers', 'Loyal Customers'],
        2: ['Hibernating', 'Hibernating', 'At Risk', 'At Risk', "Can't Lose"],
        1: ['Hibernating', 'Hibernating', 'At Risk', 'At Risk', "Can't Lose"]}
got = {r['member_id']: r for r in csv.DictReader(open(sys.argv[2]))}
assert len(got) == n, (len(got), n)
bad = 0
for m in ids:
    rec, fr, mon = pop[m]
    r, f, mm = R[rec], F[fr], M[mon]
    want = (r, f, mm, 100 * r + 10 * f + mm, grid[r][f - 1])
    g = got[m]
    have = (int(g['r']), int(g['f']), int(g['m']), int(g['score']), g['segment'])
    if have != want:
        bad += 1
        if bad < 5:
            print('mismatch', m, have, want)
assert bad == 0, bad
t = json.load(open(sys.argv[3]))
assert t['members'] == n and sum(s['members'] for s in t['segments']) == n
counts = {}
for m in ids:
    seg = grid[R[pop[m][0]]][F[pop[m][1]] - 1]
    counts[seg] = counts.get(seg, 0) + 1
for s in t['segments']:
    assert s['members'] == counts.get(s['segment'], 0), s
print('rfm: %d members match the SPEC formula' % n)
PY
