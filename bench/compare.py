#!/usr/bin/python3
"""Checks that per-member behavioural fields computed by different engines agree.

    /usr/bin/python3 bench/compare.py NAME=FILE.csv NAME=FILE.csv [...] [--json OUT.json]
                                      [--examples N]

Each file has the header member_id,recency_days,frequency,monetary,aov (extra columns
are ignored). Every pair of files is compared over the union of their member ids; a
member absent from a file counts as frequency 0, monetary 0, recency and aov empty.
Two rows agree when
  frequency is equal,
  |monetary difference| <= 0.005 (the same to the cent),
  recency_days are both empty, or both set with |difference| x 86400 <= 1 (one second),
  aov are both empty, or both set with |difference| <= 0.01 (each side rounds to cents).
Prints mismatch counts per pair and field with a few examples; exits 1 on any
mismatch, 2 on unreadable input, 0 when all agree.
"""
import argparse
import csv
import json
import sys

MONEY_TOL = 0.005 + 1e-9
AOV_TOL = 0.01 + 1e-9
RECENCY_TOL_S = 1.0


def num(s):
    s = s.strip()
    return None if s == "" or s.lower() in ("nan", "null", "none") else float(s)


def load(path):
    rows = {}
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        head = next(r)
        need = ["member_id", "recency_days", "frequency", "monetary", "aov"]
        try:
            ix = [head.index(c) for c in need]
        except ValueError:
            raise SystemExit(f"compare: {path}: header {head} lacks one of {need}")
        for line, row in enumerate(r, start=2):
            try:
                m = row[ix[0]]
                freq = num(row[ix[2]])
                rows[m] = (num(row[ix[1]]), int(freq) if freq is not None else 0,
                           num(row[ix[3]]) or 0.0, num(row[ix[4]]))
            except (IndexError, ValueError) as e:
                raise SystemExit(f"compare: {path}:{line}: bad row {row}: {e}")
    return rows


ABSENT = (None, 0, 0.0, None)


def diff_fields(a, b):
    bad = []
    if a[1] != b[1]:
        bad.append("frequency")
    if abs(a[2] - b[2]) > MONEY_TOL:
        bad.append("monetary")
    if (a[0] is None) != (b[0] is None) or (
            a[0] is not None and abs(a[0] - b[0]) * 86400 > RECENCY_TOL_S):
        bad.append("recency_days")
    if (a[3] is None) != (b[3] is None) or (
            a[3] is not None and abs(a[3] - b[3]) > AOV_TOL):
        bad.append("aov")
    return bad


def fmt(t):
    return "recency=%s freq=%d monetary=%.2f aov=%s" % (
        "-" if t[0] is None else "%.8f" % t[0], t[1], t[2],
        "-" if t[3] is None else "%.2f" % t[3])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", help="NAME=FILE.csv")
    ap.add_argument("--json")
    ap.add_argument("--examples", type=int, default=5)
    a = ap.parse_args()
    named = []
    for spec in a.files:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = spec, spec
        try:
            named.append((name, load(path)))
        except OSError as e:
            print(f"compare: cannot read {path}: {e}", file=sys.stderr)
            return 2
    if len(named) < 2:
        print("compare: need at least two files", file=sys.stderr)
        return 2

    report = {"members": {n: len(d) for n, d in named}, "pairs": [], "agree": True}
    for i in range(len(named)):
        for j in range(i + 1, len(named)):
            (na, da), (nb, db) = named[i], named[j]
            ids = set(da) | set(db)
            counts = {"frequency": 0, "monetary": 0, "recency_days": 0, "aov": 0}
            members_bad = 0
            examples = []
            max_money = 0.0
            max_rec_s = 0.0
            for m in ids:
                x, y = da.get(m, ABSENT), db.get(m, ABSENT)
                max_money = max(max_money, abs(x[2] - y[2]))
                if x[0] is not None and y[0] is not None:
                    max_rec_s = max(max_rec_s, abs(x[0] - y[0]) * 86400)
                bad = diff_fields(x, y)
                if bad:
                    members_bad += 1
                    for f in bad:
                        counts[f] += 1
                    if len(examples) < a.examples:
                        examples.append({"member_id": m, "fields": bad,
                                         na: fmt(x) + ("" if m in da else " (absent)"),
                                         nb: fmt(y) + ("" if m in db else " (absent)")})
            pair = {"a": na, "b": nb, "members_compared": len(ids),
                    "members_mismatched": members_bad, "mismatches": counts,
                    "max_monetary_diff": round(max_money, 6),
                    "max_recency_diff_s": round(max_rec_s, 6), "examples": examples}
            report["pairs"].append(pair)
            ok = members_bad == 0
            report["agree"] &= ok
            print("compare: %-7s vs %-7s %d members: %s" % (
                na, nb, len(ids), "agree" if ok else
                "%d DISAGREE (%s)" % (members_bad, ", ".join(
                    f"{k} {v}" for k, v in counts.items() if v))))
            for e in examples:
                print("    %s [%s]\n      %-7s %s\n      %-7s %s" % (
                    e["member_id"], ",".join(e["fields"]), na, e[na], nb, e[nb]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0 if report["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
