#!/usr/bin/python3
"""Writes a small orders.csv in the format of `patron generate`, full of the awkward
cases the behavioural fields must get right, and the answers worked out by a plain
row-by-row reference implementation. Used to self-test the peers and the checker:

    /usr/bin/python3 bench/mini_orders.py OUTDIR [--members N] [--seed S]

writes OUTDIR/orders.csv, OUTDIR/expected.csv (member_id,recency_days,frequency,
monetary,aov) and OUTDIR/now.txt (the evaluation time used).

Cases covered: guest rows (empty member_id), returns (order ids whose rows all have
qty < 0), orders with some negative rows (a reduced order, still counted), rows of one
order that are not adjacent and carry different timestamps (the earliest decides),
orders and returns after now (invisible), members with only returns, members with only
future orders, prices with cents that do not add up exactly in binary floating point.
"""
import argparse
import csv
import os
import random
from datetime import datetime, timedelta, timezone

HEADER = ["order_id", "member_id", "ts", "sku", "qty", "price", "category", "brand",
          "channel", "store", "original_order_id"]
NOW = datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
START = datetime(2023, 1, 1, tzinfo=timezone.utc)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    rows = []          # (order_id, member_id, ts, sku, qty, price_cents, channel, orig)
    n_orders = 0
    n_returns = 0
    span = int((NOW - START).total_seconds())

    def new_order(member, t, items, channel="web"):
        nonlocal n_orders
        n_orders += 1
        oid = "O%09d" % n_orders
        for sku, q, cents in items:
            rows.append([oid, member, t, sku, q, cents, channel, ""])
        return oid

    def new_return(member, t, items, orig):
        nonlocal n_returns
        n_returns += 1
        rid = "R%09d" % n_returns
        for sku, q, cents in items:
            rows.append([rid, member, t, sku, -abs(q), cents, "web", orig])
        return rid

    def basket():
        k = rnd.randint(1, 6)
        skus = rnd.sample(range(1, 500), k)
        return [("SKU-%05d" % s, rnd.choice([1, 1, 1, 2, 3]),
                 rnd.choice([99, 1999, 333, 10, 1, 12345, 7]) + rnd.randint(0, 5000))
                for s in skus]

    for i in range(1, a.members + 1):
        m = "M%07d" % i
        kind = rnd.random()
        if kind < 0.05:
            continue                                  # never buys: absent everywhere
        if kind < 0.08:                               # only future orders
            new_order(m, NOW + timedelta(seconds=rnd.randint(1, 10**6)), basket())
            continue
        if kind < 0.10:                               # only a return (orphan)
            new_return(m, START + timedelta(seconds=rnd.randint(0, span)), basket()[:1],
                       "O999999999")
            continue
        t = START + timedelta(seconds=rnd.randint(0, span // 2))
        for _ in range(rnd.randint(1, 8)):
            items = basket()
            if rnd.random() < 0.1 and len(items) > 1:  # a reduced order (some rows < 0)
                sku, q, c = items[-1]
                items[-1] = (sku, -1, c)
            oid = new_order(m, t, items, rnd.choice(["web", "app", "store"]))
            if rnd.random() < 0.15:                   # return some of it, maybe after now
                rt = t + timedelta(days=1 + rnd.expovariate(1 / 6))
                new_return(m, rt, items[:rnd.randint(1, len(items))], oid)
            if rnd.random() < 0.2:                    # a guest sale drawn alongside
                new_order("", START + timedelta(seconds=rnd.randint(0, span)), basket())
            t += timedelta(seconds=int(rnd.expovariate(1 / (86400 * 40))) + 1)
            if t > NOW + timedelta(days=30):
                break
        if rnd.random() < 0.02:                       # an order exactly at now
            new_order(m, NOW, basket())

    # Rows of one order with different timestamps, not adjacent: move a few rows of
    # multi-row orders to the end with a later ts (the earliest ts must still decide).
    by_order = {}
    for idx, r in enumerate(rows):
        by_order.setdefault(r[0], []).append(idx)
    moved = []
    for oid, idxs in by_order.items():
        if len(idxs) > 1 and rnd.random() < 0.05:
            r = list(rows[idxs[-1]])
            r[2] = r[2] + timedelta(hours=rnd.randint(1, 48))
            rows[idxs[-1]] = None
            moved.append(r)
    rows = [r for r in rows if r is not None] + moved

    with open(os.path.join(a.out, "orders.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        for oid, m, t, sku, q, cents, ch, orig in rows:
            store = "S%03d" % rnd.randint(1, 48) if ch == "store" else ""
            w.writerow([oid, m, iso(t), sku, q, "%d.%02d" % (cents // 100, cents % 100),
                        "misc", "Brand, Inc." if rnd.random() < 0.1 else "Acme",
                        ch, store, orig])

    # Reference: group rows by order id, then per member.
    orders = {}
    for oid, m, t, sku, q, cents, ch, orig in rows:
        o = orders.setdefault(oid, {"m": m, "ts": t, "cents": 0, "allneg": True})
        o["ts"] = min(o["ts"], t)
        o["cents"] += q * cents
        o["allneg"] = o["allneg"] and q < 0
    acc = {}
    for o in orders.values():
        if not o["m"] or o["ts"] > NOW:
            continue
        x = acc.setdefault(o["m"], {"f": 0, "c": 0, "last": None})
        x["c"] += o["cents"]
        if not o["allneg"]:
            x["f"] += 1
            if x["last"] is None or o["ts"] > x["last"]:
                x["last"] = o["ts"]
    with open(os.path.join(a.out, "expected.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["member_id", "recency_days", "frequency", "monetary", "aov"])
        for m in sorted(acc):
            x = acc[m]
            rec = "" if x["last"] is None else "%.8f" % ((NOW - x["last"]).total_seconds() / 86400)
            mon = "%.2f" % (x["c"] / 100)
            aov = "" if x["f"] == 0 else "%.2f" % (x["c"] / 100 / x["f"])
            w.writerow([m, rec, x["f"], mon, aov])
    with open(os.path.join(a.out, "now.txt"), "w") as f:
        f.write(iso(NOW) + "\n")
    print("mini_orders: %d rows, %d orders, %d returns, %d members with visible orders"
          % (len(rows), n_orders, n_returns, len(acc)))


if __name__ == "__main__":
    main()
