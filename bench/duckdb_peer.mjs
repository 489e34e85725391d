// DuckDB peer for the Patron core benchmark (bench/run). Uses @duckdb/node-api from
// bench/node_modules (npm install in bench/). Prints one JSON object on stdout.
//
//   node bench/duckdb_peer.mjs load-file ORDERS.csv DB_FILE [--threads N]
//       CREATE TABLE orders AS SELECT * FROM read_csv(...) into a fresh DuckDB file.
//       load_s = open the file + the CREATE TABLE (autocommit: committed and durable
//       when it returns); checkpoint_s = the CHECKPOINT after it, reported apart.
//
//   node bench/duckdb_peer.mjs memory ORDERS.csv NOW OUT.csv [--threads N] [--repeat K]
//       the same CREATE TABLE into an in-memory database (load_s), then the RFM
//       GROUP BY over that table K times (groupby_ms, each run fully materialised
//       inside DuckDB), and its per-member result written to OUT.csv (not timed).
import { DuckDBInstance } from '@duckdb/node-api';
import { statSync, existsSync, unlinkSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

function die(msg) {
  process.stderr.write(`duckdb_peer: ${msg}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const opts = { threads: 2, repeat: 3 };
const pos = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--threads') opts.threads = Number(args[++i]);
  else if (args[i] === '--repeat') opts.repeat = Number(args[++i]);
  else pos.push(args[i]);
}
if (!Number.isInteger(opts.threads) || opts.threads < 1) die('bad --threads');
if (!Number.isInteger(opts.repeat) || opts.repeat < 1) die('bad --repeat');

const sqlStr = (s) => `'${String(s).replaceAll("'", "''")}'`;

// Explicit column types: ids stay strings, money is exact (DECIMAL), ts is a TIMESTAMP
// (the trailing Z of the ISO 8601 UTC form is accepted).
const COLUMNS = {
  order_id: 'VARCHAR', member_id: 'VARCHAR', ts: 'TIMESTAMP', sku: 'VARCHAR',
  qty: 'INTEGER', price: 'DECIMAL(18,2)', category: 'VARCHAR', brand: 'VARCHAR',
  channel: 'VARCHAR', store: 'VARCHAR', original_order_id: 'VARCHAR',
};
function readCsv(path) {
  const cols = Object.entries(COLUMNS).map(([k, v]) => `'${k}': '${v}'`).join(', ');
  return `read_csv(${sqlStr(path)}, header = true, delim = ',', quote = '"', ` +
         `escape = '"', columns = {${cols}})`;
}

// The behavioural fields at `now` (see docs/bench.md): rows with the same order_id are
// one order (its ts = the earliest of its rows, its member = its rows' member); an
// order whose rows all have qty < 0 is a return; guest rows (no member_id) are skipped;
// orders after now are invisible.
export function rfmSql(now) {
  const n = `TIMESTAMP ${sqlStr(now)}`;
  return `
    WITH o AS (
      SELECT any_value(member_id) AS member_id, min(ts) AS ts,
             bool_and(qty < 0) AS is_return, sum(qty * price) AS amount
      FROM orders
      WHERE member_id IS NOT NULL AND member_id <> ''
      GROUP BY order_id
    )
    SELECT member_id,
           (epoch(${n}) - epoch(max(ts) FILTER (WHERE NOT is_return))) / 86400.0
             AS recency_days,
           count(*) FILTER (WHERE NOT is_return) AS frequency,
           sum(amount) AS monetary,
           CASE WHEN count(*) FILTER (WHERE NOT is_return) > 0
                THEN round(sum(amount) / count(*) FILTER (WHERE NOT is_return), 2)
           END AS aov
    FROM o
    WHERE ts <= ${n}
    GROUP BY member_id`;
}

async function scalar(conn, sql) {
  const r = await conn.runAndReadAll(sql);
  const v = r.getRows()[0][0];
  return typeof v === 'bigint' ? Number(v) : v;
}

async function open(path, threads) {
  const inst = await DuckDBInstance.create(path);
  const conn = await inst.connect();
  await conn.run(`SET threads = ${threads}`);
  await conn.run(`SET preserve_insertion_order = true`);
  return { inst, conn };
}

const mode = pos[0];
if (mode === 'load-file') {
  const [, csv, dbFile] = pos;
  if (!csv || !dbFile) die('usage: load-file ORDERS.csv DB_FILE');
  if (!existsSync(csv)) die(`no such file: ${csv}`);
  for (const f of [dbFile, `${dbFile}.wal`]) if (existsSync(f)) unlinkSync(f);
  const t0 = performance.now();
  const { inst, conn } = await open(dbFile, opts.threads);
  await conn.run(`CREATE TABLE orders AS SELECT * FROM ${readCsv(csv)}`);
  const t1 = performance.now();
  await conn.run('CHECKPOINT');
  const t2 = performance.now();
  const rows = await scalar(conn, 'SELECT count(*) FROM orders');
  const version = await scalar(conn, 'SELECT version()');
  conn.closeSync?.();
  inst.closeSync?.();
  const size = (f) => (existsSync(f) ? statSync(f).size : 0);
  console.log(JSON.stringify({
    mode, version, threads: opts.threads, rows,
    load_s: (t1 - t0) / 1000, checkpoint_s: (t2 - t1) / 1000,
    file_bytes: size(dbFile) + size(`${dbFile}.wal`),
  }));
} else if (mode === 'memory') {
  const [, csv, now, out] = pos;
  if (!csv || !now || !out) die('usage: memory ORDERS.csv NOW OUT.csv');
  if (!existsSync(csv)) die(`no such file: ${csv}`);
  const t0 = performance.now();
  const { inst, conn } = await open(':memory:', opts.threads);
  await conn.run(`CREATE TABLE orders AS SELECT * FROM ${readCsv(csv)}`);
  const t1 = performance.now();
  const rows = await scalar(conn, 'SELECT count(*) FROM orders');
  let memBytes = null;
  try {
    memBytes = await scalar(conn, 'SELECT sum(memory_usage_bytes) FROM duckdb_memory()');
  } catch { /* older DuckDB: no duckdb_memory() */ }
  const sql = rfmSql(now);
  const times = [];
  let members = null;
  for (let k = 0; k < opts.repeat; k++) {
    const a = performance.now();
    const res = await conn.run(sql);          // materialised result, not read into JS
    const b = performance.now();
    times.push(b - a);
    members = Number(res.rowCount);
  }
  await conn.run(`COPY (SELECT member_id, recency_days, frequency, monetary, aov
                        FROM (${sql}) ORDER BY member_id)
                  TO ${sqlStr(out)} (HEADER, DELIMITER ',')`);
  const version = await scalar(conn, 'SELECT version()');
  conn.closeSync?.();
  inst.closeSync?.();
  const sorted = [...times].sort((x, y) => x - y);
  console.log(JSON.stringify({
    mode, version, threads: opts.threads, rows, members, memory_bytes: memBytes,
    load_s: (t1 - t0) / 1000, groupby_ms: times,
    groupby_ms_min: sorted[0], groupby_ms_median: sorted[Math.floor(sorted.length / 2)],
  }));
} else {
  die('usage: duckdb_peer.mjs load-file ORDERS.csv DB_FILE | memory ORDERS.csv NOW OUT.csv');
}
