// Node.js cassandra-driver (npm, 4.x) against a running Ilion node, default settings.
// Usage: node test.js HOST PORT. Exits non-zero on the first failed check, naming it.
'use strict';
const cassandra = require('cassandra-driver');
const { types } = cassandra;
const [host, port] = [process.argv[2] || '127.0.0.1', parseInt(process.argv[3] || '9042', 10)];
const KS = 'drv_node';
let checks = 0;

function check(cond, what) {
  checks++;
  if (!cond) {
    console.log('FAIL: ' + what);
    process.exit(1);
  }
}

async function expectError(code, fn, what) {
  try {
    await fn();
  } catch (e) {
    check(e.code === code, `${what}: got code 0x${(e.code || 0).toString(16)} (${e.message})`);
    return;
  }
  check(false, what + ': no error');
}

async function main() {
  const client = new cassandra.Client({
    contactPoints: [host], localDataCenter: 'datacenter1', protocolOptions: { port },
  });
  await client.connect();
  try {
    const local = await client.execute("SELECT release_version FROM system.local WHERE key = 'local'");
    check(local.rows.length === 1, 'system.local answers');
    await client.execute(`DROP KEYSPACE IF EXISTS ${KS}`);
    await client.execute(`CREATE KEYSPACE ${KS} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`);
    await client.execute(`CREATE TABLE ${KS}.events (tenant text, day int, seq int, body text, PRIMARY KEY ((tenant, day), seq))`);
    for (let i = 0; i < 20; i++) {
      await client.execute(`INSERT INTO ${KS}.events (tenant, day, seq, body) VALUES (?, ?, ?, ?)`,
        ['acme', 1, i, 'b' + i], { prepare: true });
    }
    let rs = await client.execute(`SELECT seq FROM ${KS}.events WHERE tenant = ? AND day = ? AND seq >= ? AND seq < ?`,
      ['acme', 1, 5, 9], { prepare: true });
    check(JSON.stringify(rs.rows.map(r => r.seq)) === '[5,6,7,8]', 'clustering slice');

    // Every type, prepared, read back equal; boundaries and nulls.
    await client.execute(`CREATE TABLE ${KS}.types (id int PRIMARY KEY, a_ascii ascii, a_bigint bigint,
      a_blob blob, a_boolean boolean, a_decimal decimal, a_double double, a_float float, a_inet inet,
      a_int int, a_smallint smallint, a_text text, a_timestamp timestamp, a_uuid uuid, a_timeuuid timeuuid,
      a_tinyint tinyint, a_varint varint, a_date date, a_time time)`);
    const cols = ['a_ascii', 'a_bigint', 'a_blob', 'a_boolean', 'a_decimal', 'a_double', 'a_float',
      'a_inet', 'a_int', 'a_smallint', 'a_text', 'a_timestamp', 'a_uuid', 'a_timeuuid', 'a_tinyint',
      'a_varint', 'a_date', 'a_time'];
    const rowsIn = [
      [1, ['', types.Long.MIN_VALUE, Buffer.alloc(0), false, types.BigDecimal.fromString('-0.000000000000000000000000000001'),
        -Number.MAX_VALUE, -1.5, '0.0.0.0', -2147483648, -32768, '', new Date(-2208988800000),
        types.Uuid.fromString('00000000-0000-0000-0000-000000000000'), types.TimeUuid.now(), -128,
        types.Integer.fromString('-1267650600228229401496703205376'), types.LocalDate.fromString('1970-01-01'),
        types.LocalTime.fromString('00:00:00')]],
      [2, ['x'.repeat(300), types.Long.MAX_VALUE, Buffer.from([0, 1, 2, 255]), true,
        types.BigDecimal.fromString('12345678901234567890.123456789'), 1e300, 3.25, '2001:db8::1',
        2147483647, 32767, 'héllo ✓', new Date(253402300799000), types.Uuid.random(), types.TimeUuid.now(), 127,
        types.Integer.fromString('1606938044258990275541962092341162602522202993782792835301376'),
        types.LocalDate.fromString('2262-04-11'), types.LocalTime.fromString('23:59:59.999999999')]],
      [3, cols.map(() => null)],
    ];
    const ins = `INSERT INTO ${KS}.types (id, ${cols.join(', ')}) VALUES (?, ${cols.map(() => '?').join(', ')})`;
    for (const [id, vals] of rowsIn) {
      await client.execute(ins, [id, ...vals], { prepare: true });
      const r = (await client.execute(`SELECT * FROM ${KS}.types WHERE id = ?`, [id], { prepare: true })).first();
      check(r, 'types row ' + id);
      cols.forEach((c, i) => {
        const want = vals[i];
        const got = r[c];
        let same;
        if (want === null) same = got === null;
        else if (Buffer.isBuffer(want)) same = Buffer.isBuffer(got) && want.equals(got);
        else if (want instanceof Date) same = got instanceof Date && got.getTime() === want.getTime();
        else if (Array.isArray(want)) same = JSON.stringify(got) === JSON.stringify(want);
        else if (typeof want === 'object' && want.toString && !(want.constructor === Object)) same = got !== null && got.toString() === want.toString();
        else if (typeof want === 'object') same = JSON.stringify(got) === JSON.stringify(want);
        else same = got === want || (got !== null && typeof got === 'object' && got.toString() === String(want));
        check(same, `type ${c} row ${id}: got ${got} want ${want}`);
      });
    }

    // Paging: 10,000 rows, page size 100.
    await client.execute(`CREATE TABLE ${KS}.wide (k int, c int, PRIMARY KEY (k, c))`);
    const wins = `INSERT INTO ${KS}.wide (k, c) VALUES (1, ?)`;
    for (let base = 0; base < 10000; base += 500) {
      const ps = [];
      for (let i = base; i < base + 500; i++) ps.push(client.execute(wins, [i], { prepare: true }));
      await Promise.all(ps);
    }
    let seen = 0, pages = 0, pageState, ordered = true;
    do {
      rs = await client.execute(`SELECT c FROM ${KS}.wide WHERE k = 1`, [], { prepare: true, fetchSize: 100, pageState });
      for (const r of rs.rows) { if (r.c !== seen) ordered = false; seen++; }
      pages++;
      pageState = rs.pageState;
    } while (pageState);
    check(seen === 10000 && ordered, `paged 10,000 rows in order (got ${seen})`);
    check(pages >= 100, `page size 100 honoured (${pages} pages)`);

    // TTL, USING TIMESTAMP, batch, deletes.
    await client.execute(`CREATE TABLE ${KS}.kv (k text PRIMARY KEY, v text)`);
    await client.execute(`INSERT INTO ${KS}.kv (k, v) VALUES ('ttl', 'x') USING TTL 1`);
    check((await client.execute(`SELECT v FROM ${KS}.kv WHERE k = 'ttl'`)).rows.length === 1, 'TTL row visible');
    await new Promise(r => setTimeout(r, 2500));
    check((await client.execute(`SELECT v FROM ${KS}.kv WHERE k = 'ttl'`)).rows.length === 0, 'TTL row expired');
    await client.execute(`INSERT INTO ${KS}.kv (k, v) VALUES ('ts', 'new') USING TIMESTAMP 2000`);
    await client.execute(`INSERT INTO ${KS}.kv (k, v) VALUES ('ts', 'old') USING TIMESTAMP 1000`);
    check((await client.execute(`SELECT v FROM ${KS}.kv WHERE k = 'ts'`)).first().v === 'new', 'USING TIMESTAMP');
    await client.batch([
      { query: `INSERT INTO ${KS}.kv (k, v) VALUES (?, ?)`, params: ['b1', '1'] },
      { query: `INSERT INTO ${KS}.kv (k, v) VALUES (?, ?)`, params: ['b2', '2'] },
    ], { prepare: true });
    check((await client.execute(`SELECT v FROM ${KS}.kv WHERE k = 'b2'`)).first().v === '2', 'batch');
    await client.execute(`DELETE v FROM ${KS}.kv WHERE k = 'b1'`);
    await client.execute(`DELETE FROM ${KS}.events WHERE tenant = 'acme' AND day = 1 AND seq = 3`);
    check((await client.execute(`SELECT * FROM ${KS}.events WHERE tenant = 'acme' AND day = 1 AND seq = 3`)).rows.length === 0, 'row delete');
    const b1 = (await client.execute(`SELECT v FROM ${KS}.kv WHERE k = 'b1'`)).first();
    check(!b1 || b1.v === null, 'column delete');

    const codes = types.responseErrorCodes;
    await expectError(codes.syntaxError, () => client.execute('SELEKT 1'), 'syntax error');
    await expectError(codes.invalid, () => client.execute(`SELECT * FROM ${KS}.nope`), 'invalid');
    await expectError(codes.alreadyExists, () => client.execute(`CREATE TABLE ${KS}.kv (k text PRIMARY KEY)`), 'already exists');

    // Collections last: everything above is checked even where they are not supported.
    await client.execute(`CREATE TABLE ${KS}.coll (id int PRIMARY KEY, a_list list<int>, a_set set<text>, a_map map<text, int>)`);
    await client.execute(`INSERT INTO ${KS}.coll (id, a_list, a_set, a_map) VALUES (?, ?, ?, ?)`,
      [1, [2147483647, -1], ['x', 'y'], { a: -1, b: 2 }], { prepare: true });
    const cr = (await client.execute(`SELECT * FROM ${KS}.coll WHERE id = 1`)).first();
    check(JSON.stringify(cr.a_list) === '[2147483647,-1]' && JSON.stringify(cr.a_set) === '["x","y"]' &&
      JSON.stringify(cr.a_map) === '{"a":-1,"b":2}', 'collections read back: ' + JSON.stringify(cr));
  } finally {
    await client.shutdown();
  }
  console.log(`node.js driver: OK (${checks} checks)`);
}

main().catch(e => { console.log('FAIL: ' + (e && e.stack || e)); process.exit(1); });
