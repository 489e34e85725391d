#!/usr/bin/env bash
# The rule language on UCI Online Retail at --now 2011-12-10: a set of rules covering
# every aggregate, window form and operator is counted with `patron query --count`, and
# each count is compared with SQL written here over the raw rows (sqlite3 through
# Python), never with numbers taken from the engine.
set -euo pipefail
P=${PATRON_BIN:?}
DATA=${PATRON_SHARED_DATA:?}/online_retail/online_retail.csv.gz
[ -f "$DATA" ] || { echo "skip: $DATA missing"; exit 0; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MAP=order_id=InvoiceNo,member_id=CustomerID,ts=InvoiceDate,sku=StockCode,qty=Quantity,price=UnitPrice
"$P" --db "$T/p.db" --now 2011-12-10 --quiet import orders "$DATA" --map "$MAP" --max-errors 10 \
    --rejects "$T/rejects.csv" 2>/dev/null

# Each case: a rule, then the SQL that counts the same members (tables below).
cat > "$T/cases.txt" <<'EOF'
count(orders, 90d) >= 2
select count(*) from m where (select count(*) from o where o.cust=m.cust and o.ts > :now - 90*86400 and o.ts <= :now) >= 2
sum(orders.amount, 180d..90d) > 100
select count(*) from m where (select coalesce(sum(amt),0) from o where o.cust=m.cust and o.ts > :now - 180*86400 and o.ts <= :now - 90*86400) > 100*10000
avg(items.price where sku = "85123A") > 2.8
select count(*) from m where (select avg(price) from it where it.cust=m.cust and sku='85123A' and ts <= :now) > 2.8*10000
min(orders.amount) < 10 and max(orders.amount, 365d) >= 200
select count(*) from m where (select min(amt) from o where o.cust=m.cust) < 10*10000 and (select max(amt) from o where o.cust=m.cust and o.ts > :now - 365*86400) >= 200*10000
count_distinct(items.sku, 30d) between 10 and 50
select count(*) from m where (select count(distinct sku) from it where it.cust=m.cust and ts > :now - 30*86400) between 10 and 50
sum(items.qty where sku in ["85123A", "22423", "NO-SUCH-SKU"], all) >= 12
select count(*) from m where (select coalesce(sum(qty),0) from it where it.cust=m.cust and sku in ('85123A','22423')) >= 12
count(returns, 365d) >= 1 and sum(returns.amount) > 50
select count(*) from m where (select count(*) from rt where rt.cust=m.cust and ts > :now - 365*86400) >= 1 and (select coalesce(sum(amt),0) from rt where rt.cust=m.cust) > 50*10000
monetary > 1000 and frequency >= 5
select count(*) from m where (select coalesce(sum(amt),0) from o where o.cust=m.cust) - (select coalesce(sum(amt),0) from rt where rt.cust=m.cust) > 1000*10000 and (select count(*) from o where o.cust=m.cust) >= 5
recency_days <= 30 or recency_days is null
select count(*) from m where (select max(ts) from o where o.cust=m.cust) is null or :now - (select max(ts) from o where o.cust=m.cust) <= 30*86400
aov / 2 > 100
select count(*) from m where (select count(*) from o where o.cust=m.cust) > 0 and ((select coalesce(sum(amt),0) from o where o.cust=m.cust) - (select coalesce(sum(amt),0) from rt where rt.cust=m.cust)) > 200*10000 * (select count(*) from o where o.cust=m.cust)
monetary / (frequency - frequency) is null
select count(*) from m
not (count(orders where amount > 500, 365d) = 0)
select count(*) from m where exists (select 1 from o where o.cust=m.cust and amt > 500*10000 and o.ts > :now - 365*86400)
count(items where qty >= 12 and price < 1, 90d) > 3
select count(*) from m where (select count(*) from it where it.cust=m.cust and qty >= 12 and price < 10000 and ts > :now - 90*86400) > 3
max(orders.ts) >= "2011-12-01"
select count(*) from m where (select max(ts) from o where o.cust=m.cust) >= 1322697600
days_since(max(orders.ts)) > 100
select count(*) from m where :now - (select max(ts) from o where o.cust=m.cust) > 100*86400
count(orders where items > 20) != 0
select count(*) from m where exists (select 1 from o where o.cust=m.cust and o.items > 20)
sum(orders.units, 60d) > 100 and not count(orders, 60d) < 2
select count(*) from m where (select coalesce(sum(units),0) from o where o.cust=m.cust and o.ts > :now - 60*86400) > 100 and (select count(*) from o where o.cust=m.cust and o.ts > :now - 60*86400) >= 2
member_id in ["12346.0", "17850.0", "99999999"] or member_id = "12347.0"
select count(*) from m where cust in ('12346.0','17850.0','12347.0')
spend_trend <= -0.5 and sum(orders.amount, 180d..90d) > 0
select count(*) from m where (select coalesce(sum(amt),0) from o where o.cust=m.cust and o.ts > :now - 180*86400 and o.ts <= :now - 90*86400) > 0 and ((select coalesce(sum(amt),0) from o where o.cust=m.cust and o.ts > :now - 90*86400) - (select coalesce(sum(amt),0) from rt where rt.cust=m.cust and rt.ts > :now - 90*86400) - (select coalesce(sum(amt),0) from o where o.cust=m.cust and o.ts > :now - 180*86400 and o.ts <= :now - 90*86400) + (select coalesce(sum(amt),0) from rt where rt.cust=m.cust and rt.ts > :now - 180*86400 and rt.ts <= :now - 90*86400)) * 2 <= -max(10000, (select coalesce(sum(amt),0) from o where o.cust=m.cust and o.ts > :now - 180*86400 and o.ts <= :now - 90*86400) - (select coalesce(sum(amt),0) from rt where rt.cust=m.cust and rt.ts > :now - 180*86400 and rt.ts <= :now - 90*86400))
tenure_days > 300 and -frequency <= -3
select count(*) from m where :now - (select min(ts) from (select ts from o where o.cust=m.cust union all select ts from rt where rt.cust=m.cust)) > 300*86400 and (select count(*) from o where o.cust=m.cust) >= 3
count(items where sku = "85123A" or sku = "POST", 2w) >= 1 and frequency > 1 * 2 + 1
select count(*) from m where exists (select 1 from it where it.cust=m.cust and sku in ('85123A','POST') and ts > :now - 14*86400) and (select count(*) from o where o.cust=m.cust) > 3
sum(orders.amount where amount between 100 and 200, 1y) >= 400 or count(returns where items >= 3) > 0
select count(*) from m where (select coalesce(sum(amt),0) from o where o.cust=m.cust and amt between 100*10000 and 200*10000 and o.ts > :now - 365*86400) >= 400*10000 or exists (select 1 from rt where rt.cust=m.cust and rt.items >= 3)
EOF

/usr/bin/python3 - "$DATA" "$T/cases.txt" "$P" "$T/p.db" <<'PY'
import csv, gzip, sqlite3, subprocess, sys, calendar, time
from decimal import Decimal
data, cases, patron, db = sys.argv[1:5]
now = calendar.timegm(time.strptime('2011-12-10', '%Y-%m-%d'))
q = sqlite3.connect(':memory:')
q.execute('create table r(inv, cust, ts int, sku, qty int, price int)')
rows = []
bad = set()
for r in csv.DictReader(gzip.open(data, 'rt', encoding='utf-8', newline='')):
    price = int(Decimal(r['UnitPrice']) * 10000)
    if price < 0:
        bad.add(r['InvoiceNo'])  # a bad row rejects its whole order
    ts = calendar.timegm(time.strptime(r['InvoiceDate'], '%Y-%m-%d %H:%M:%S'))
    rows.append((r['InvoiceNo'], r['CustomerID'], ts, r['StockCode'], int(r['Quantity']), price))
q.executemany('insert into r values (?,?,?,?,?,?)', [x for x in rows if x[0] not in bad])
# orders: invoices with a positive row; returns: invoices whose rows are all negative.
q.executescript('''
create table inv as select inv, cust, min(ts) ts, sum(qty*price) amt, max(qty > 0) pos,
  sum(case when qty > 0 then 1 else 0 end) pitems, sum(case when qty > 0 then qty else 0 end) punits,
  sum(case when qty < 0 then 1 else 0 end) nitems from r where cust != '' group by inv;
create table o as select inv, cust, ts, amt, pitems items, punits units from inv where pos;
create table rt as select inv, cust, ts, -amt amt, nitems items from inv where not pos;
create table it as select r.cust, r.sku, r.qty, r.price, o.ts from r join o on r.inv = o.inv where r.qty > 0;
create table m as select distinct cust from inv;
create index o_c on o(cust); create index rt_c on rt(cust); create index it_c on it(cust);
''')
lines = [l.rstrip('\n') for l in open(cases) if l.strip()]
assert len(lines) % 2 == 0
bad = 0
for rule, sql in zip(lines[0::2], lines[1::2]):
    want = q.execute(sql, {'now': now}).fetchone()[0]
    got = subprocess.run([patron, '--db', db, '--now', '2011-12-10', 'query', rule, '--count'],
                         capture_output=True, text=True)
    if got.returncode != 0 or int(got.stdout) != want:
        bad += 1
        print('MISMATCH', rule, 'engine:', got.stdout.strip(), got.stderr.strip(), 'sql:', want)
    else:
        print('ok %6d  %s' % (want, rule))
assert bad == 0, '%d rules disagree' % bad
print('%d rules agree with SQL over the raw rows' % (len(lines) // 2))
PY
