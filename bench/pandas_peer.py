#!/usr/bin/python3
"""pandas peer for the Patron core benchmark (bench/run). Run with Debian's python3
(/usr/bin/python3, which sees python3-pandas):

    /usr/bin/python3 bench/pandas_peer.py ORDERS.csv NOW OUT.csv [--repeat K]

read_s: pandas.read_csv of the columns the fields need (order_id, member_id, ts, qty,
price; ids as strings), plus turning ts into datetime64 and price into integer cents.
groupby_ms: the behavioural fields from that frame (K runs; group rows into orders,
then orders into members), the result held as a DataFrame. The per-member result of
the last run is written to OUT.csv (not timed). Prints one JSON object on stdout.
"""
import argparse
import json
import sys
import time

import numpy as np
import pandas as pd


def load(path):
    df = pd.read_csv(
        path,
        usecols=["order_id", "member_id", "ts", "qty", "price"],
        dtype={"order_id": str, "member_id": str, "ts": str, "qty": np.int64,
               "price": np.float64},
        keep_default_na=False, na_values={"member_id": [""]},
    )
    df["ts"] = pd.to_datetime(df["ts"], format="%Y-%m-%dT%H:%M:%SZ")
    df["cents"] = np.rint(df["price"].to_numpy() * 100).astype(np.int64)
    return df


def rfm(df, now):
    # Guest rows belong to no member.
    d = df[df["member_id"].notna()]
    amount = d["qty"].to_numpy() * d["cents"].to_numpy()
    d = d.assign(amount=amount)
    # Rows -> orders: member, earliest ts, total amount, largest qty (< 0: a return).
    o = d.groupby("order_id", sort=False).agg(
        member_id=("member_id", "first"), ts=("ts", "min"),
        amount=("amount", "sum"), maxq=("qty", "max"))
    o = o[o["ts"] <= now]
    is_order = o["maxq"].to_numpy() >= 0
    o = o.assign(is_order=is_order,
                 order_ts=o["ts"].where(is_order))   # NaT for returns
    g = o.groupby("member_id", sort=True)
    r = pd.DataFrame({
        "last": g["order_ts"].max(),
        "frequency": g["is_order"].sum().astype(np.int64),
        "cents": g["amount"].sum().astype(np.int64),
    })
    r["recency_days"] = (now - r["last"]).dt.total_seconds() / 86400.0
    r["monetary"] = r["cents"] / 100.0
    r["aov"] = (r["monetary"] / r["frequency"].where(r["frequency"] > 0)).round(2)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("now")
    ap.add_argument("out")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    now = pd.Timestamp(a.now)
    if now.tzinfo is not None:
        now = now.tz_convert("UTC").tz_localize(None)

    t0 = time.perf_counter()
    df = load(a.csv)
    read_s = time.perf_counter() - t0

    times = []
    r = None
    for _ in range(max(1, a.repeat)):
        del r
        t0 = time.perf_counter()
        r = rfm(df, now)
        times.append((time.perf_counter() - t0) * 1000)

    # Money from integer cents, exactly; recency with 10 decimals (~1e-5 s).
    c = r["cents"]
    sign = np.where(c < 0, "-", "")
    money = sign + (c.abs() // 100).astype(str) + "." + (c.abs() % 100).astype(str).str.zfill(2)
    out = pd.DataFrame({
        "recency_days": r["recency_days"].map(lambda x: "" if pd.isna(x) else "%.10f" % x),
        "frequency": r["frequency"],
        "monetary": money,
        "aov": r["aov"].map(lambda x: "" if pd.isna(x) else "%.2f" % x),
    }, index=r.index)
    out.to_csv(a.out, index_label="member_id")
    s = sorted(times)
    json.dump({"pandas": pd.__version__, "rows": int(len(df)), "members": int(len(r)),
               "read_s": read_s, "groupby_ms": times, "groupby_ms_min": s[0],
               "groupby_ms_median": s[len(s) // 2]}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
