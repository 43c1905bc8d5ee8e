// BullMQ (npm `bullmq`, pinned in package.json) on Redis, in Node: what the teams run today.
//
// A faithful port of bench/common.py to JavaScript, with the same command line, the same
// worker subprocesses ("i t_enq t_start" lines, t in seconds since the epoch, and `.count`
// files), the same measurements and the same JSON keys on one output line:
//
//   node adapter.mjs <enqueue|bulk|drain|latency|load|delayed|soak> --url redis://127.0.0.1:6379/<db> [options]
//   node adapter.mjs worker --url ... --concurrency N --record FILE     (stopped by SIGTERM)
//
// The system under test, as its users run it: enqueue is `queue.add` (awaited, one by one);
// bulk is `queue.addBulk` (one call per chunk: see BULK_CHUNK); delay is the `delay` job
// option; a worker is `new Worker(queue, async job => record(job.data), {concurrency})` with
// finished jobs trimmed as BullMQ's "Auto-removal of jobs" guide advises (removeOnComplete
// {count: 1000}, removeOnFail {count: 5000}). setup() is FLUSHDB of the URL's db (never db 0);
// sizes() is Redis's `INFO memory` used_memory. There is no xmin in Redis: `--hold-xmin` is
// accepted and reported as `"held_rate": null` with a note.
//
// The JSON line is printed as Python's json.dumps prints it (", " and ": " separators, NaN as
// NaN, 200.0 for the float options); floats print with JavaScript's shortest round-trip digits,
// which match Python's repr except for exponents (1e-7 rather than 1e-07).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleepMs } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';

const SCRIPT = fileURLToPath(import.meta.url);
const QUEUE = 'bench';
const KEEP = { removeOnComplete: { count: 1000 }, removeOnFail: { count: 5000 } };
const BULK_CHUNK = 50_000; // _prefill already hands over at most 50,000 at a time

// time.time(): wall clock in seconds with sub-millisecond resolution (Date.now() has only ms).
// Not performance.timeOrigin: Node reads it apart from the monotonic clock's start, and a
// process started while both cores are busy can be descheduled in between, which put one
// worker's clock 2 ms behind its producer's (a negative median latency). The offset is
// taken instead at the edge of a Date.now() millisecond; being descheduled there only makes
// it smaller, so the largest of three is kept.
const wallOffset = (() => {
  let best = -Infinity;
  for (let edges = 0; edges < 3; edges++) {
    const from = Date.now();
    let ms = from;
    let at = performance.now();
    while (ms === from) {
      ms = Date.now();
      at = performance.now();
    }
    best = Math.max(best, ms - at);
  }
  return best;
})();
const now = () => (wallOffset + performance.now()) / 1000;
// time.perf_counter() / time.monotonic()
const monotonic = () => performance.now() / 1000;
const sleep = (seconds) => sleepMs(Math.max(0, seconds * 1000));

// -- the adapter -------------------------------------------------------------------------

function redisOptions(url) {
  const u = new URL(url);
  if (u.protocol !== 'redis:') throw new Error(`not a redis:// URL: ${url}`);
  const db = Number((u.pathname || '/0').slice(1) || 0);
  const options = { host: u.hostname || '127.0.0.1', port: Number(u.port || 6379), db };
  if (u.password) options.password = decodeURIComponent(u.password);
  if (u.username) options.username = decodeURIComponent(u.username);
  return options;
}

class BullMQRedis {
  name = 'BullMQ 6.7 (Redis, Node)';
  concurrency = 50; // per worker process; 50, 100 and 200 tie on this machine (NOTES.md)

  constructor(url) {
    this.url = url;
    this.connection = redisOptions(url);
  }

  async setup() {
    if (!this.connection.db) throw new Error('refusing to FLUSHDB db 0: give a db number 1..15 in the URL');
    const client = new Redis(this.connection);
    try {
      await client.flushdb();
    } finally {
      client.disconnect();
    }
  }

  async open() {
    this.queue = new Queue(QUEUE, { connection: this.connection });
    this.queue.on('error', (err) => console.error(err));
    await this.queue.waitUntilReady();
  }

  async close() {
    await this.queue.close();
  }

  async enqueueOne(payload) {
    await this.queue.add('noop', payload);
  }

  async enqueueMany(payloads, { delay = 0 } = {}) {
    const opts = delay > 0 ? { delay: Math.round(delay * 1000) } : undefined;
    for (let start = 0; start < payloads.length; start += BULK_CHUNK) {
      const chunk = payloads.slice(start, start + BULK_CHUNK);
      await this.queue.addBulk(chunk.map((data) => ({ name: 'noop', data, opts })));
    }
  }

  async runWorker(concurrency, record) {
    const worker = new Worker(QUEUE, async (job) => record(job.data), {
      connection: this.connection,
      concurrency,
      ...KEEP,
    });
    worker.on('error', (err) => console.error(err));
    await new Promise(() => {}); // until SIGTERM
  }

  async sizes() {
    const client = new Redis(this.connection);
    try {
      const info = await client.info('memory');
      const match = /^used_memory:(\d+)/m.exec(info);
      return { used_memory: match ? Number(match[1]) : null };
    } finally {
      client.disconnect();
    }
  }

  // Not in the Python contract: what this db holds, since used_memory is the whole instance.
  async dbStats() {
    const client = new Redis(this.connection);
    try {
      const dbsize = await client.dbsize();
      let bytes = 0;
      let cursor = '0';
      do {
        const [next, keys] = await client.scan(cursor, 'COUNT', 1000);
        cursor = next;
        if (keys.length) {
          const pipeline = client.pipeline();
          for (const key of keys) pipeline.memory('USAGE', key, 'SAMPLES', '0');
          for (const [err, size] of await pipeline.exec()) if (!err && size) bytes += Number(size);
        }
      } while (cursor !== '0');
      return { dbsize, db_key_bytes: bytes };
    } finally {
      client.disconnect();
    }
  }
}

// -- the worker side ---------------------------------------------------------------------

class Recorder {
  constructor(file) {
    this.path = file;
    this.rows = [];
    this.count = 0;
    this.fd = fs.openSync(file, 'a');
    this.timer = setInterval(() => this.flush(), 50);
  }

  record(payload) {
    this.rows.push([payload.i, payload.t ?? 0.0, now()]);
  }

  flush() {
    const rows = this.rows;
    this.rows = [];
    if (rows.length) {
      fs.writeSync(this.fd, rows.map(([i, t, s]) => `${i} ${t.toFixed(6)} ${s.toFixed(6)}\n`).join(''));
      this.count += rows.length;
    }
    // Written aside and renamed: a reader never sees the file empty.
    fs.writeFileSync(`${this.path}.count.tmp`, String(this.count));
    fs.renameSync(`${this.path}.count.tmp`, `${this.path}.count`);
  }
}

async function workerMain(adapter, args) {
  const recorder = new Recorder(args.record);
  process.on('SIGTERM', () => {
    recorder.flush();
    process.exit(0); // benchmarks end workers abruptly; everything they did is recorded
  });
  await adapter.runWorker(args.concurrency, (payload) => recorder.record(payload));
}

class Workers {
  constructor(url, procs, concurrency) {
    this.folder = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-'));
    this.processes = [];
    for (let n = 0; n < procs; n++) {
      const child = spawn(
        process.execPath,
        [SCRIPT, 'worker', '--url', url, '--concurrency', String(concurrency), '--record', path.join(this.folder, `w${n}.log`)],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      child.stderrText = '';
      child.exited = false;
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk) => {
        child.stderrText = (child.stderrText + chunk).slice(-100_000);
      });
      child.done = new Promise((resolve) => child.on('exit', () => { child.exited = true; resolve(); }));
      this.processes.push(child);
    }
  }

  count() {
    let total = 0;
    for (const name of fs.readdirSync(this.folder)) {
      if (!name.endsWith('.count')) continue;
      try {
        total += Number.parseInt(fs.readFileSync(path.join(this.folder, name), 'utf8') || '0', 10) || 0;
      } catch {
        // being written
      }
    }
    return total;
  }

  async waitFor(n, { timeout }) {
    const deadline = monotonic() + timeout;
    while (this.count() < n) {
      for (const child of this.processes) {
        if (child.exited) throw new Error(`a worker died: ${child.stderrText.slice(-3000)}`);
      }
      if (monotonic() > deadline) throw new Error(`TimeoutError: ${this.count()} of ${n} jobs ran within ${timeout} s`);
      await sleep(0.02);
    }
  }

  async stop() {
    for (const child of this.processes) if (!child.exited) child.kill('SIGTERM');
    for (const child of this.processes) {
      const timedOut = await Promise.race([child.done.then(() => false), sleep(10).then(() => true)]);
      if (timedOut) {
        child.kill('SIGKILL');
        await child.done;
      }
    }
  }

  rows() {
    const rows = [];
    for (const name of fs.readdirSync(this.folder)) {
      if (!name.endsWith('.log')) continue;
      for (const line of fs.readFileSync(path.join(this.folder, name), 'utf8').split('\n')) {
        if (!line) continue;
        const [i, t, s] = line.split(' ');
        rows.push([Number.parseInt(i, 10), Number.parseFloat(t), Number.parseFloat(s)]);
      }
    }
    return rows;
  }
}

// Python's round(): halves to even.
function pyRound(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function percentile(values, q) {
  const ordered = [...values].sort((a, b) => a - b);
  if (!ordered.length) return NaN;
  const index = Math.min(ordered.length - 1, Math.max(0, pyRound((q / 100) * (ordered.length - 1))));
  return ordered[index];
}

function exactlyOnce(rows, n) {
  const seen = new Uint32Array(n);
  for (const [i] of rows) if (i >= 0 && i < n) seen[i] += 1;
  let unique = 0;
  let twice = 0;
  for (const c of seen) {
    if (c) unique += 1;
    if (c > 1) twice += 1;
  }
  return { executed: rows.length, unique, twice };
}

function rate(rows) {
  const starts = rows.map((r) => r[2]).sort((a, b) => a - b);
  const seconds = starts.length > 1 ? starts[starts.length - 1] - starts[0] : NaN;
  // Python: `len / seconds if seconds else nan` (NaN is truthy there, 0.0 is not)
  return [seconds, seconds !== 0 ? starts.length / seconds : NaN];
}

// The keys whose values are floats in Python, where an integral float prints as "200.0".
const FLOAT_KEYS = new Set(['seconds', 'rate', 'p50_ms', 'p95_ms', 'p99_ms', 'max_ms', 'target_rate', 'achieved_rate',
  'first_tenth_rate', 'last_tenth_rate', 'last_to_first', 'middle_third_rate', 'held_rate', 'held_to_first']);

// json.dumps(value) with its defaults: ", " and ": " separators, NaN / Infinity as bare words.
function pyJson(value, float = false) {
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'NaN';
    if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
    return float && Number.isInteger(value) ? `${value}.0` : JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => pyJson(v)).join(', ')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyJson(v, FLOAT_KEYS.has(k))}`).join(', ')}}`;
  }
  return JSON.stringify(value ?? null);
}

const maxOf = (values) => values.reduce((a, b) => (b > a ? b : a), -Infinity);

// -- the workloads -----------------------------------------------------------------------

async function enqueue(adapter, args) {
  await adapter.setup();
  await adapter.open();
  let seconds;
  try {
    const started = monotonic();
    for (let i = 0; i < args.n; i++) await adapter.enqueueOne({ i, t: now() });
    seconds = monotonic() - started;
  } finally {
    await adapter.close();
  }
  return { jobs: args.n, seconds, rate: args.n / seconds };
}

async function bulk(adapter, args) {
  await adapter.setup();
  const payloads = Array.from({ length: args.n }, (_, i) => ({ i, t: 0.0 }));
  await adapter.open();
  let seconds;
  try {
    const started = monotonic();
    await adapter.enqueueMany(payloads);
    seconds = monotonic() - started;
  } finally {
    await adapter.close();
  }
  return { jobs: args.n, seconds, rate: args.n / seconds };
}

async function prefill(adapter, n, { delayed = 0 } = {}) {
  await adapter.open();
  try {
    const chunk = 50_000;
    for (let start = 0; start < delayed; start += chunk) {
      const count = Math.min(chunk, delayed - start);
      await adapter.enqueueMany(Array.from({ length: count }, () => ({ i: -1, t: 0.0 })), { delay: 86_400 });
    }
    for (let start = 0; start < n; start += chunk) {
      const end = Math.min(n, start + chunk);
      await adapter.enqueueMany(Array.from({ length: end - start }, (_, k) => ({ i: start + k, t: 0.0 })));
    }
  } finally {
    await adapter.close();
  }
}

async function drain(adapter, args) {
  await adapter.setup();
  await prefill(adapter, args.n, { delayed: args.delayed });
  const concurrency = args.concurrency || adapter.concurrency;
  const workers = new Workers(adapter.url, args.procs, concurrency);
  try {
    await workers.waitFor(args.n, { timeout: args.timeout });
  } finally {
    await workers.stop();
  }
  const rows = workers.rows();
  const [seconds, r] = rate(rows);
  return { jobs: args.n, seconds, rate: r, ...exactlyOnce(rows, args.n), procs: args.procs, concurrency, delayed: args.delayed };
}

async function latency(adapter, args) {
  await adapter.setup();
  const workers = new Workers(adapter.url, 1, args.concurrency || adapter.concurrency);
  await adapter.open();
  try {
    // Warm up: the worker is ready once it ran a job.
    await adapter.enqueueOne({ i: args.count, t: now() });
    await workers.waitFor(1, { timeout: 60 });
    await sleep(1.0); // then idle
    for (let i = 0; i < args.count; i++) {
      await adapter.enqueueOne({ i, t: now() });
      await sleep(args.interval);
    }
    await workers.waitFor(args.count + 1, { timeout: 60 });
  } finally {
    await adapter.close();
    await workers.stop();
  }
  const waits = workers.rows().filter(([i]) => i < args.count).map(([, t, s]) => (s - t) * 1000);
  return { count: waits.length, p50_ms: percentile(waits, 50), p95_ms: percentile(waits, 95),
    p99_ms: percentile(waits, 99), max_ms: maxOf(waits) };
}

async function load(adapter, args) {
  await adapter.setup();
  const workers = new Workers(adapter.url, args.procs, args.concurrency || adapter.concurrency);
  const producers = args.producers;
  await adapter.open();
  const total = Math.trunc(args.rate * args.duration);
  const backlog = [];
  let producedIn;
  try {
    await adapter.enqueueOne({ i: total, t: now() });
    await workers.waitFor(1, { timeout: 60 });
    const started = monotonic();
    let sent = 0;

    const produce = async (offset) => {
      for (let i = offset; i < total; i += producers) {
        const due = started + i / args.rate;
        const pause = due - monotonic();
        if (pause > 0) await sleep(pause);
        await adapter.enqueueOne({ i, t: now() });
        sent += 1;
      }
    };

    const watcher = setInterval(() => backlog.push(sent - (workers.count() - 1)), 1000);
    try {
      await Promise.all(Array.from({ length: producers }, (_, p) => produce(p)));
    } finally {
      clearInterval(watcher);
    }
    producedIn = monotonic() - started;
    await workers.waitFor(total + 1, { timeout: args.duration * 10 });
  } finally {
    await adapter.close();
    await workers.stop();
  }
  const rows = workers.rows().filter((r) => r[0] < total);
  const waits = rows.map(([, t, s]) => (s - t) * 1000);
  const second = backlog.slice(Math.floor(backlog.length / 2));
  const tail = second.length ? second : [0];
  return { target_rate: args.rate, achieved_rate: total / producedIn, p50_ms: percentile(waits, 50),
    p99_ms: percentile(waits, 99), backlog, backlog_second_half_max: maxOf(tail), ...exactlyOnce(rows, total) };
}

async function soak(adapter, args) {
  await adapter.setup();
  await prefill(adapter, args.n);
  const workers = new Workers(adapter.url, 1, args.concurrency || adapter.concurrency);
  try {
    // --hold-xmin: Redis has no transaction horizon to hold open, so there is nothing to do.
    await workers.waitFor(args.n, { timeout: args.timeout });
  } finally {
    await workers.stop();
  }
  const rows = workers.rows().sort((a, b) => a[2] - b[2]);
  const tenth = Math.floor(rows.length / 10);
  const third = Math.floor(rows.length / 3);
  const first = rate(rows.slice(0, tenth))[1];
  const last = rate(tenth ? rows.slice(-tenth) : rows)[1];
  const [seconds, r] = rate(rows);
  const result = { jobs: args.n, seconds, rate: r, first_tenth_rate: first, last_tenth_rate: last,
    last_to_first: last / first, middle_third_rate: rate(rows.slice(third, 2 * third))[1],
    ...exactlyOnce(rows, args.n) };
  if (args.hold_xmin) {
    result.held_rate = null;
    result.held_to_first = null;
    result.note = 'Redis has no MVCC horizon (xmin) to hold open: --hold-xmin does not apply; the soak ran without it';
  }
  result.sizes = await adapter.sizes();
  Object.assign(result, await adapter.dbStats());
  return result;
}

// -- the command line --------------------------------------------------------------------

const WORKLOADS = ['worker', 'enqueue', 'bulk', 'drain', 'latency', 'load', 'delayed', 'soak'];

function usage(message) {
  process.stderr.write(`usage: adapter.mjs {${WORKLOADS.join(',')}} --url URL [--n N] [--procs N] [--concurrency N] `
    + '[--record FILE] [--count N] [--interval S] [--rate R] [--duration S] [--producers N] [--delayed N] '
    + `[--hold-xmin] [--timeout S]\nadapter.mjs: error: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const spec = {
    '--url': String, '--n': Number.parseInt, '--procs': Number.parseInt, '--concurrency': Number.parseInt,
    '--record': String, '--count': Number.parseInt, '--interval': Number.parseFloat, '--rate': Number.parseFloat,
    '--duration': Number.parseFloat, '--producers': Number.parseInt, '--delayed': Number.parseInt,
    '--timeout': Number.parseFloat,
  };
  const args = { workload: undefined, url: undefined, n: undefined, procs: 1, concurrency: undefined, record: undefined,
    count: 300, interval: 0.02, rate: 1000, duration: 60, producers: 4, delayed: 0, hold_xmin: false, timeout: 1800 };
  for (let k = 0; k < argv.length; k++) {
    let arg = argv[k];
    let value;
    if (arg.startsWith('--') && arg.includes('=')) [arg, value] = [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)];
    if (arg === '--hold-xmin') {
      args.hold_xmin = true;
    } else if (arg in spec) {
      if (value === undefined) {
        if (k + 1 >= argv.length) usage(`argument ${arg}: expected one argument`);
        value = argv[++k];
      }
      const parsed = spec[arg](value);
      if (typeof parsed === 'number' && Number.isNaN(parsed)) usage(`argument ${arg}: invalid value: '${value}'`);
      args[arg.slice(2)] = parsed;
    } else if (!arg.startsWith('-') && args.workload === undefined) {
      if (!WORKLOADS.includes(arg)) usage(`argument workload: invalid choice: '${arg}'`);
      args.workload = arg;
    } else {
      usage(`unrecognized arguments: ${arg}`);
    }
  }
  if (!args.workload) usage('the following arguments are required: workload');
  if (!args.url) usage('the following arguments are required: --url');
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const adapter = new BullMQRedis(args.url);
  if (args.workload === 'worker') {
    await workerMain(adapter, args);
    return;
  }
  const defaults = { enqueue: 10_000, bulk: 100_000, drain: 50_000, delayed: 50_000, soak: 1_000_000 };
  if (args.n === undefined) args.n = defaults[args.workload] ?? 0;
  if (args.workload === 'delayed' && !args.delayed) args.delayed = 200_000;
  const run = { enqueue, bulk, drain, delayed: drain, latency, load, soak }[args.workload];
  const result = await run(adapter, args);
  process.stdout.write(`${pyJson({ system: adapter.name, workload: args.workload, ...result })}\n`);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
