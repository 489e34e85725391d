// DuckDB peer for the rule benchmark (bench/rules.sh).  Loads the generated CSV/JSONL
// into in-memory tables (m: members, o: orders and returns, it: line items of orders,
// msg: messages), then runs every SQL line of bench/rules.txt K times and prints one
// JSON object: load_s, and per rule its count, ms_min and ms_median.
//
//   node bench/rules_peer.mjs DATA_DIR RULES_FILE NOW [--threads N] [--repeat K]
import { DuckDBInstance } from '@duckdb/node-api';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const args = process.argv.slice(2);
const opts = { threads: 2, repeat: 5 };
const pos = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--threads') opts.threads = Number(args[++i]);
  else if (args[i] === '--repeat') opts.repeat = Number(args[++i]);
  else pos.push(args[i]);
}
if (pos.length !== 3) {
  process.stderr.write('usage: node rules_peer.mjs DATA_DIR RULES_FILE NOW [--threads N] [--repeat K]\n');
  process.exit(2);
}
const [dir, rulesFile, now] = pos;
const q = (s) => `'${String(s).replaceAll("'", "''")}'`;
const nowSql = `TIMESTAMP ${q(now.replace('T', ' ').replace('Z', ''))}`;

const db = await DuckDBInstance.create(':memory:', { threads: String(opts.threads) });
const conn = await db.connect();
const t0 = performance.now();
await conn.run(`CREATE TABLE li AS SELECT * FROM read_csv(${q(dir + '/orders.csv')}, header = true,
  columns = {'order_id': 'VARCHAR', 'member_id': 'VARCHAR', 'ts': 'TIMESTAMP', 'sku': 'VARCHAR',
  'qty': 'INTEGER', 'price': 'DECIMAL(18,2)', 'category': 'VARCHAR', 'brand': 'VARCHAR',
  'channel': 'VARCHAR', 'store': 'VARCHAR', 'original_order_id': 'VARCHAR'})`);
await conn.run(`CREATE TABLE m AS SELECT member_id, country, gender, language, signup_channel,
  preferred_channel, city, interests, CAST(enrolled_at AS TIMESTAMP) AS enrolled_at,
  TRY_CAST(birth_date AS DATE) AS birth_date, TRY_CAST(household_size AS INTEGER) AS household_size
  FROM read_csv(${q(dir + '/members.csv')}, header = true, all_varchar = true)`);
await conn.run(`CREATE TABLE o AS SELECT order_id, any_value(member_id) AS member_id, min(ts) AS ts,
  sum(qty * price) AS amount, bool_and(qty < 0) AS is_return FROM li
  WHERE member_id IS NOT NULL AND member_id <> '' GROUP BY order_id`);
await conn.run(`CREATE TABLE it AS SELECT li.member_id, li.sku, li.category, li.brand, li.qty,
  li.price, li.qty * li.price AS amount, o.ts FROM li JOIN o USING (order_id)
  WHERE NOT o.is_return AND li.qty > 0`);
await conn.run(`CREATE TABLE msg AS SELECT member_id, CAST(ts AS TIMESTAMP) AS ts, channel, action
  FROM read_json(${q(dir + '/events.jsonl')}, format = 'newline_delimited',
  columns = {'type': 'VARCHAR', 'member_id': 'VARCHAR', 'ts': 'VARCHAR', 'channel': 'VARCHAR',
  'action': 'VARCHAR'}) WHERE type = 'message'`);
const load_s = (performance.now() - t0) / 1000;

const lines = readFileSync(rulesFile, 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
const rules = [];
for (let i = 0; i + 1 < lines.length; i += 2) {
  const sql = lines[i + 1].replaceAll(':now', nowSql);
  const ms = [];
  let count = null;
  for (let k = 0; k < opts.repeat; k++) {
    const a = performance.now();
    const r = await conn.runAndReadAll(sql);
    ms.push(performance.now() - a);
    count = Number(r.getRows()[0][0]);
  }
  ms.sort((x, y) => x - y);
  rules.push({ rule: lines[i], count, ms_min: ms[0], ms_median: ms[Math.floor(ms.length / 2)] });
}
process.stdout.write(JSON.stringify({ load_s, threads: opts.threads, rules }, null, 1) + '\n');
