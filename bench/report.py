#!/usr/bin/python3
"""Assembles the figures bench/run collected in its run folder into
bench/results/core-SIZE.json and a markdown table (bench/results/core-SIZE.md, and
stdout). Not meant to be run by hand; see docs/bench.md for what each figure means."""
import argparse
import datetime
import glob
import json
import os
import platform
import re
import statistics
import subprocess

GIB = 1 << 30
TARGETS_FOR = "M"


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def num(path):
    s = read(path)
    return float(s) if s not in (None, "") else None


def jread(path):
    """The last JSON object a command printed (patron --json prints one line)."""
    s = read(path)
    if not s:
        return None
    for line in reversed(s.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    try:
        return json.loads(s)
    except ValueError:
        return None


def runs(run, prefix):
    """[{wall, rss, json, rc, err}] of PREFIX_1, PREFIX_2, ... in run order."""
    out = []
    for i in range(1, 1000):
        base = os.path.join(run, f"{prefix}_{i}")
        if not os.path.exists(base + ".wall"):
            break
        out.append({"wall": num(base + ".wall"), "rss": int(num(base + ".rss") or 0),
                    "json": jread(base + ".out"), "rc": int(num(base + ".rc") or 0),
                    "err": read(base + ".err", "")})
    return out


def cpu_model():
    s = read("/proc/cpuinfo", "")
    m = re.search(r"^model name\s*:\s*(.+)$", s, re.M)
    return m.group(1).strip() if m else platform.processor() or "unknown"


def mem_total():
    s = read("/proc/meminfo", "")
    m = re.search(r"^MemTotal:\s*(\d+) kB", s, re.M)
    return int(m.group(1)) * 1024 if m else None


def git(root, *args):
    try:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def main():
    ap = argparse.ArgumentParser()
    for k in ("size", "data", "run", "patron", "root", "md", "json"):
        ap.add_argument("--" + k, required=True)
    for k in ("seed", "runs", "repeat", "threads"):
        ap.add_argument("--" + k, type=int, required=True)
    a = ap.parse_args()

    params = json.load(open(os.path.join(a.data, "params.json")))
    counts = params.get("counts", {})
    csv = os.path.join(a.data, "orders.csv")
    csv_bytes = os.path.getsize(csv)
    rows = counts.get("order_rows")
    if rows is None:                       # count data lines
        with open(csv, "rb") as f:
            rows = sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 24), b"")) - 1

    # ---- patron
    imp = runs(a.run, "patron_import")
    mem = runs(a.run, "patron_members")
    feat = runs(a.run, "patron_features")
    import_s = min(r["wall"] for r in imp)
    import_rss = max(r["rss"] for r in imp)
    imp_json = imp[-1]["json"] or {}
    members_s = members_err = None
    if mem:
        if all(r["rc"] == 0 for r in mem):
            members_s = min(r["wall"] for r in mem)
        else:
            bad = [r for r in mem if r["rc"] != 0][-1]
            members_err = (bad["err"].splitlines() or ["exit %d" % bad["rc"]])[-1]
    fj = [r["json"] or {} for r in feat]
    load_s = min(j.get("load_s", float("inf")) for j in fj)
    best = min(fj, key=lambda j: j.get("load_s", float("inf")))
    pass_min = min(j.get("pass_ms_min", float("inf")) for j in fj)
    pass_median = statistics.median(j.get("pass_ms_median") for j in fj
                                    if j.get("pass_ms_median") is not None)
    items = best.get("items") or imp_json.get("items") or rows
    resident = best.get("rss_bytes")
    model = best.get("model_bytes")
    patron = {
        "binary": a.patron,
        "members_import_s": members_s,
        "members_import_error": members_err,
        "members_import_peak_rss_bytes": max((r["rss"] for r in mem), default=None),
        "import_s": import_s,
        "import_s_runs": [r["wall"] for r in imp],
        "items_per_s": rows / import_s,
        "mb_per_s": csv_bytes / 1e6 / import_s,
        "import_peak_rss_bytes": import_rss,
        "import_result": imp_json,
        "store_bytes": int(num(os.path.join(a.run, "patron_store.bytes")) or 0),
        "load_s": load_s,
        "load_s_runs": [j.get("load_s") for j in fj],
        "members": best.get("members"),
        "orders": best.get("orders"),
        "items": best.get("items"),
        "resident_bytes": resident,
        "resident_bytes_per_item": ratio(resident, items),
        "model_bytes": model,
        "model_bytes_per_item": ratio(model, items),
        "features_peak_rss_bytes": max(r["rss"] for r in feat),
        "pass_ms_min": pass_min,
        "pass_ms_median": pass_median,
        "passes_per_load": a.repeat,
    }

    # ---- DuckDB
    dfile = runs(a.run, "duckdb_file")
    dm = jread(os.path.join(a.run, "duckdb_memory.out")) or {}
    djs = [r["json"] or {} for r in dfile]
    duck = {
        "version": dm.get("version") or (djs[0].get("version") if djs else None),
        "threads": a.threads,
        "file_load_s": min(j["load_s"] for j in djs),
        "file_load_s_runs": [j["load_s"] for j in djs],
        "file_checkpoint_s": min(j["checkpoint_s"] for j in djs),
        "file_load_wall_s": min(r["wall"] for r in dfile),
        "file_load_peak_rss_bytes": max(r["rss"] for r in dfile),
        "file_bytes": djs[-1].get("file_bytes"),
        "rows": djs[-1].get("rows"),
        "memory_load_s": dm.get("load_s"),
        "memory_table_bytes": dm.get("memory_bytes"),
        "memory_peak_rss_bytes": int(num(os.path.join(a.run, "duckdb_memory.rss")) or 0),
        "groupby_ms_min": dm.get("groupby_ms_min"),
        "groupby_ms_median": dm.get("groupby_ms_median"),
        "groupby_ms_runs": dm.get("groupby_ms"),
        "members": dm.get("members"),
    }
    pj = jread(os.path.join(a.run, "pandas.out")) or {}
    pandas = {
        "version": pj.get("pandas"),
        "read_s": pj.get("read_s"),
        "groupby_ms_min": pj.get("groupby_ms_min"),
        "groupby_ms_median": pj.get("groupby_ms_median"),
        "groupby_ms_runs": pj.get("groupby_ms"),
        "peak_rss_bytes": int(num(os.path.join(a.run, "pandas.rss")) or 0),
        "rows": pj.get("rows"),
        "members": pj.get("members"),
    }
    agreement = json.load(open(os.path.join(a.run, "compare.json")))

    ratios = {
        "import_duckdb_file_over_patron": ratio(duck["file_load_s"], import_s),
        "import_duckdb_memory_over_patron": ratio(duck["memory_load_s"], import_s),
        "import_pandas_read_over_patron": ratio(pandas["read_s"], import_s),
        "pass_duckdb_over_patron": ratio(duck["groupby_ms_min"], pass_min),
        "pass_pandas_over_patron": ratio(pandas["groupby_ms_min"], pass_min),
    }

    def target(name, goal, value, met):
        return {"name": name, "target": goal, "value": value,
                "met": None if value is None else bool(met)}

    rb = resident
    targets = [
        target("import throughput", ">= 3,000,000 line items/s", patron["items_per_s"],
               patron["items_per_s"] >= 3e6),
        target("import vs DuckDB file load", "patron import s <= DuckDB file load s",
               ratios["import_duckdb_file_over_patron"],
               (ratios["import_duckdb_file_over_patron"] or 0) >= 1),
        target("import peak RSS", "< 3 GiB", import_rss, import_rss < 3 * GIB),
        target("cold load", "< 3 s", load_s, load_s < 3),
        target("resident size loaded", "< 2 GiB", rb, rb is not None and rb < 2 * GIB),
        target("behavioural pass", "< 100 ms (median)", pass_median, pass_median < 100),
        target("pass vs DuckDB GROUP BY", ">= 20x faster (best vs best)",
               ratios["pass_duckdb_over_patron"], (ratios["pass_duckdb_over_patron"] or 0) >= 20),
        target("answers agree", "patron = DuckDB = pandas", agreement["agree"],
               agreement["agree"]),
    ]

    commit = git(a.root, "rev-parse", "HEAD") or "none"
    dirty = bool(git(a.root, "status", "--porcelain", "--untracked-files=no"))
    node_v = ""
    try:
        node_v = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    result = {
        "benchmark": "core",
        "size": a.size,
        "seed": a.seed,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "memory_bytes": mem_total(),
                    "kernel": platform.release()},
        "git": {"commit": commit, "dirty": dirty},
        "versions": {"duckdb": duck["version"], "pandas": pandas["version"], "node": node_v,
                     "python": platform.python_version()},
        "settings": {"runs": a.runs, "passes_per_load": a.repeat, "duckdb_threads": a.threads,
                     "groupby_runs": 3},
        "data": {"members": params.get("members"), "now": params.get("now") or params.get("end"),
                 "rows": rows, "line_items": counts.get("line_items"),
                 "return_rows": counts.get("return_items"), "orders": counts.get("orders"),
                 "returns": counts.get("returns"), "csv_bytes": csv_bytes,
                 "dir": os.path.relpath(a.data, a.root)},
        "patron": patron,
        "duckdb": duck,
        "pandas": pandas,
        "ratios": ratios,
        "agreement": agreement,
        "targets_size": TARGETS_FOR,
        "targets": targets,
    }
    with open(a.json, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    md = markdown(result)
    with open(a.md, "w") as f:
        f.write(md)
    print(md, end="")


def f_s(x):
    return "–" if x is None else ("%.3f s" % x if x < 10 else "%.1f s" % x)


def f_ms(x):
    return "–" if x is None else ("%.3f ms" % x if x < 1 else "%.2f ms" % x if x < 100 else "%.0f ms" % x)


def f_b(x):
    if x is None:
        return "–"
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if x >= k:
            return "%.2f %s" % (x / k, unit)
    return "%d B" % x


def f_n(x):
    return "–" if x is None else "{:,.0f}".format(x)


def f_x(x):
    return "–" if x is None else ("%.1f×" % x if x < 100 else "%.0f×" % x)


def markdown(r):
    p, d, pd_, dt = r["patron"], r["duckdb"], r["pandas"], r["data"]
    x = r["ratios"]
    rows = dt["rows"]
    L = []
    L.append(f"## Patron core benchmark, size {r['size']}\n")
    L.append(f"{f_n(dt['members'])} members, {f_n(rows)} rows in orders.csv "
             f"({f_n(dt['line_items'])} line items + {f_n(dt['return_rows'])} return rows), "
             f"{f_b(dt['csv_bytes'])} CSV; now = {dt['now']}, seed {r['seed']}. "
             f"{r['machine']['nproc']} × {r['machine']['cpu']}; "
             f"commit {r['git']['commit'][:12]}{' (dirty)' if r['git']['dirty'] else ''}; "
             f"{r['date']}. " + ("Best of %d runs for imports and loads; " % r['settings']['runs']
                              if r['settings']['runs'] > 1 else "One run of each import and load; ") +
             f"DuckDB {d['version']} with {d['threads']} threads, pandas {pd_['version']}.\n")
    L.append("| figure | Patron | DuckDB | pandas | DuckDB / Patron | pandas / Patron |")
    L.append("|---|---|---|---|---|---|")
    L.append(f"| CSV → durable store (Patron import, DuckDB file) | {f_s(p['import_s'])} | "
             f"{f_s(d['file_load_s'])} | – | {f_x(x['import_duckdb_file_over_patron'])} | – |")
    L.append(f"| line items/s into the store | {f_n(rows / p['import_s'])} | "
             f"{f_n(rows / d['file_load_s'])} | – | | |")
    L.append(f"| peak RSS of that load | {f_b(p['import_peak_rss_bytes'])} | "
             f"{f_b(d['file_load_peak_rss_bytes'])} | – | | |")
    L.append(f"| store size on disk | {f_b(p['store_bytes'])} | {f_b(d['file_bytes'])} | – | | |")
    L.append(f"| CSV → memory (DuckDB in-memory table, pandas read_csv) | – | "
             f"{f_s(d['memory_load_s'])} | {f_s(pd_['read_s'])} | "
             f"{f_x(x['import_duckdb_memory_over_patron'])} | {f_x(x['import_pandas_read_over_patron'])} |")
    L.append(f"| cold load, store → memory | {f_s(p['load_s'])} | – | – | | |")
    L.append(f"| resident after load | {f_b(p['resident_bytes'])} | {f_b(d['memory_table_bytes'])} "
             f"(table) | {f_b(pd_['peak_rss_bytes'])} (peak RSS) | | |")
    bpi = p["resident_bytes_per_item"]
    mbi = p["model_bytes_per_item"]
    L.append(f"| bytes per line item (resident{', model' if mbi else ''}) | "
             f"{'–' if bpi is None else '%.1f' % bpi}{'' if not mbi else ', %.1f' % mbi} | "
             f"{'–' if not d['memory_table_bytes'] else '%.1f' % (d['memory_table_bytes'] / rows)} | – | | |")
    L.append(f"| full behavioural pass, best | {f_ms(p['pass_ms_min'])} | {f_ms(d['groupby_ms_min'])} | "
             f"{f_ms(pd_['groupby_ms_min'])} | {f_x(x['pass_duckdb_over_patron'])} | "
             f"{f_x(x['pass_pandas_over_patron'])} |")
    L.append(f"| full behavioural pass, median | {f_ms(p['pass_ms_median'])} | "
             f"{f_ms(d['groupby_ms_median'])} | {f_ms(pd_['groupby_ms_median'])} | | |")
    if p["members_import_s"] is not None:
        L.append(f"| members.csv import (not in line items/s) | {f_s(p['members_import_s'])}, "
                 f"peak RSS {f_b(p['members_import_peak_rss_bytes'])} | – | – | | |")
    elif p["members_import_error"]:
        L.append(f"| members.csv import | failed: {p['members_import_error']} | – | – | | |")
    L.append("")
    note = "" if r["size"] == r["targets_size"] else \
        f" (the targets are set for size {r['targets_size']}; at {r['size']} they are indicative)"
    L.append(f"Targets{note}:\n")
    L.append("| target | goal | value | met |")
    L.append("|---|---|---|---|")
    for t in r["targets"]:
        v = t["value"]
        if t["name"] == "import throughput":
            v = f_n(v) + " items/s"
        elif "RSS" in t["name"] or "resident" in t["name"]:
            v = f_b(v)
        elif t["name"] == "cold load":
            v = f_s(v)
        elif t["name"] == "behavioural pass":
            v = f_ms(v)
        elif isinstance(v, bool):
            v = "yes" if v else "no"
        else:
            v = f_x(v)
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        L.append(f"| {t['name']} | {t['goal'] if 'goal' in t else t['target']} | {v} | {met} |")
    L.append("")
    ag = r["agreement"]
    parts = []
    for pr in ag["pairs"]:
        parts.append("%s/%s: %s" % (pr["a"], pr["b"], "agree" if pr["members_mismatched"] == 0
                                    else "%d members differ" % pr["members_mismatched"]))
    L.append("Agreement over %s members (frequency equal, money to the cent, recency to the "
             "second): %s.\n" % (f_n(max(ag["members"].values())), "; ".join(parts)))
    return "\n".join(L)


if __name__ == "__main__":
    main()
