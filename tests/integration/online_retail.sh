#!/usr/bin/env bash
# UCI Online Retail through `patron import orders` with the documented --map and
# --max-errors 10; every member's frequency, monetary and recency is checked against
# values computed independently here (Python over the raw rows), and re-importing the
# file must change nothing.
set -euo pipefail
P=${PATRON_BIN:?}
DATA=${PATRON_SHARED_DATA:?}/online_retail/online_retail.csv.gz
[ -f "$DATA" ] || { echo "skip: $DATA missing"; exit 0; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MAP=order_id=InvoiceNo,member_id=CustomerID,ts=InvoiceDate,sku=StockCode,qty=Quantity,price=UnitPrice
"$P" --db "$T/p.db" --now 2011-12-10 --quiet import orders "$DATA" --map "$MAP" --max-errors 10 \
    --rejects "$T/rejects.csv" 2>"$T/err.txt"
grep -q "online_retail.csv.gz:299985: column 'price': price '-11062.06' is negative" "$T/err.txt"
[ "$(wc -l < "$T/rejects.csv")" -eq 3 ]
"$P" --db "$T/p.db" --now 2011-12-10 features --out "$T/f1.csv" --repeat 1
before=$(sqlite3 "$T/p.db" "select count(*), sum(n), sum(length(data)) from order_chunks"; "$P" --db "$T/p.db" --now 2011-12-10 --json stats)
"$P" --db "$T/p.db" --now 2011-12-10 --json import orders "$DATA" --map "$MAP" --max-errors 10 \
    --rejects "$T/rejects2.csv" 2>/dev/null | grep -q '"inserted":0,"items":0,"duplicates":25898'
after=$(sqlite3 "$T/p.db" "select count(*), sum(n), sum(length(data)) from order_chunks"; "$P" --db "$T/p.db" --now 2011-12-10 --json stats)
[ "$before" = "$after" ]
# Without --max-errors nothing is stored and the exit code is 2.
set +e
"$P" --db "$T/q.db" --quiet import orders "$DATA" --map "$MAP" 2>/dev/null; rc=$?
set -e
[ $rc -eq 2 ]
[ "$(sqlite3 "$T/q.db" "select count(*) from order_chunks")" -eq 0 ]
/usr/bin/python3 - "$DATA" "$T/f1.csv" <<'PY'
import csv, gzip, sys, datetime
from decimal import Decimal
now = datetime.datetime(2011, 12, 10)
orders = {}
for r in csv.DictReader(gzip.open(sys.argv[1], 'rt', encoding='utf-8', newline='')):
    if Decimal(r['UnitPrice']) < 0:
        continue  # the two bad rows (single-row orders)
    o = orders.setdefault(r['InvoiceNo'], {'m': r['CustomerID'], 'ts': None, 'amt': Decimal(0), 'pos': False})
    ts = datetime.datetime.strptime(r['InvoiceDate'], '%Y-%m-%d %H:%M:%S')
    o['ts'] = ts if o['ts'] is None or ts < o['ts'] else o['ts']
    o['amt'] += int(r['Quantity']) * Decimal(r['UnitPrice'])
    o['pos'] |= int(r['Quantity']) > 0
exp = {}
for o in orders.values():
    if not o['m']:
        continue
    e = exp.setdefault(o['m'], [0, Decimal(0), None])
    e[1] += o['amt']
    if o['pos']:
        e[0] += 1
        e[2] = o['ts'] if e[2] is None or o['ts'] > e[2] else e[2]
got = {r['member_id']: r for r in csv.DictReader(open(sys.argv[2]))}
assert len(got) == len(exp) == 4372, (len(got), len(exp))
bad = 0
for m, (f, mon, last) in exp.items():
    g = got[m]
    ok = int(g['frequency']) == f and abs(Decimal(g['monetary']) - mon) <= Decimal('0.005')
    if last is None:
        ok &= g['recency_days'] == ''
    else:
        ok &= abs(float(g['recency_days']) * 86400 - (now - last).total_seconds()) < 1
    if not ok:
        bad += 1
        if bad < 5:
            print('mismatch', m, g, f, mon, last)
assert bad == 0, bad
print('online retail: %d members match' % len(exp))
PY
# Line items are stored as column chunks: decode them here (format "PIC2", written from
# docs/storage.md, not from the C code) and compare the item count with the stats, the
# sku codes with the dictionary.
items=$("$P" --db "$T/p.db" --now 2011-12-10 --json stats | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["items"])')
/usr/bin/python3 - "$T/p.db" "$items" <<'PY'
import sqlite3, struct, sys
def varints(b, count):
    out, v, s = [], 0, 0
    for c in b:
        v |= (c & 0x7f) << s
        s += 7
        if c < 0x80:
            out.append(v)
            v, s = 0, 0
    assert s == 0 and len(out) == count, (len(out), count)
    return out
db = sqlite3.connect(sys.argv[1])
total = units = 0
skus = {c for (c,) in db.execute("select code from dict where kind = 1")}
for (blob,) in db.execute("select data from item_chunks order by id"):
    assert blob[:4] == b"PIC2"
    n, runs, unit = struct.unpack_from("<IIQ", blob, 4)
    sizes = struct.unpack_from("<6I", blob, 20)
    at = 44 + 8 * runs
    assert at + sum(sizes) + 8 == len(blob)
    cols = []
    for k, count in enumerate([runs, n, n, n, n, n]):
        cols.append(varints(blob[at:at + sizes[k]], count))
        at += sizes[k]
    assert sum(cols[0]) == n and min(cols[0]) >= 1
    assert all(s in skus for s in cols[1])
    units += sum((q >> 1) ^ -(q & 1) for q in cols[4])  # zigzag
    total += n
assert total == int(sys.argv[2]), (total, sys.argv[2])
print("item chunks: %d items, %d units" % (total, units))
PY
