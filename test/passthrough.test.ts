import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import type { StreamManifest, JobRecord } from "../src/mod.ts";
import { rawMembers, rawObject } from "../src/jetstream/raw-json.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";
import { jsApi, jsApiRaw, memberText } from "./harness/inspect.ts";

/** 2^53 + 1 nanoseconds: JSON.parse would make it 9007199254740992. */
const MaxAge = "9007199254740993";
const Description = 'kept "as is" \\ } ü 😀';

describe("stream configurations pass through untouched", () => {
  let rig: ServiceRig;
  let nc: NatsConnection;

  before(async () => {
    rig = await startRig();
    nc = rig.nc;
  });
  after(async () => {
    await rig?.stop();
  });

  test("a max_age of 2^53+1 ns and the description survive backup and restore byte for byte", async () => {
    assert.notEqual(String(Number(MaxAge)), MaxAge, "the value is not exact as a JS number");
    const create =
      `{"name":"PASS","subjects":["PASS.>"],"storage":"file","max_age":${MaxAge},` +
      `"description":${JSON.stringify(Description)},"max_msgs_per_subject":7,"discard":"new","duplicate_window":120000000000}`;
    const created = await jsApiRaw(nc, "STREAM.CREATE.PASS", create);
    assert.ok(!created.includes('"error"'), created);
    assert.ok(created.includes(`"max_age":${MaxAge}`), created);
    const js = jetstream(nc);
    for (let i = 0; i < 25; i++) await js.publish(`PASS.${i % 5}`, `message ${i}`);

    const infoBefore = await jsApiRaw(nc, "STREAM.INFO.PASS");
    const configBefore = memberText(infoBefore, "config");
    assert.ok(configBefore, infoBefore);
    assert.ok(configBefore.includes(`"max_age":${MaxAge}`), configBefore);

    const done = await request<JobRecord>(nc, "$BACKUP.stream.PASS", { wait: true }, 120_000);
    assert.equal(done.errorCode, null, done.raw);
    const manifest = done.body.result as StreamManifest;
    assert.equal(manifest.messages, 25);

    const os = await new Objm(jetstream(nc)).open(rig.svc.bucket);
    const blob = await os.getBlob(`${manifest.id}/backup.json`);
    assert.ok(blob, "backup.json is in the bucket");
    const backupJson = new TextDecoder().decode(blob);
    assert.ok(backupJson.includes(`"max_age":${MaxAge}`), backupJson);
    const stored = storedConfig(configBefore);
    assert.ok(backupJson.startsWith(`{"config":${stored},"state":{`), "backup.json's config is the server's text, unchanged");
    assert.equal(memberText(backupJson, "config"), stored);
    const state = JSON.parse(memberText(backupJson, "state")!) as { messages: number; last_seq: number };
    assert.equal(state.messages, 25);
    assert.equal(state.last_seq, 25);

    const deleted = await jsApi<{ success: boolean }>(nc, "STREAM.DELETE.PASS");
    assert.equal(deleted.success, true);

    const restored = await request<JobRecord>(nc, "$RESTORE.stream.PASS", { wait: true }, 120_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal(restored.body.state, "completed");
    const infoAfter = await jsApiRaw(nc, "STREAM.INFO.PASS");
    assert.ok(infoAfter.includes(`"max_age":${MaxAge}`), infoAfter);
    assert.equal(memberText(infoAfter, "config"), configBefore, "the restored stream has the configuration it had");
    const stateAfter = JSON.parse(memberText(infoAfter, "state")!) as { messages: number };
    assert.equal(stateAfter.messages, 25);
  });

  test("overrides change only the fields they name", async () => {
    const configBefore = memberText(await jsApiRaw(nc, "STREAM.INFO.PASS"), "config")!;
    await jsApi(nc, "STREAM.DELETE.PASS");
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.PASS", { wait: true, replicas: 1 }, 120_000);
    assert.equal(restored.errorCode, null, restored.raw);
    const configAfter = memberText(await jsApiRaw(nc, "STREAM.INFO.PASS"), "config")!;
    assert.ok(configAfter.includes(`"max_age":${MaxAge}`), configAfter);
    assert.equal(configAfter, configBefore, "num_replicas 1 was already the value");
  });
});

describe("raw-json", () => {
  const samples: [string, string][] = [
    ["an empty object", "{}"],
    ["an empty object with space", " { \n\t } "],
    ["nested objects and arrays", '{"a":{"b":{"c":[1,[2,{"d":[]}],{}]}},"e":[{"f":"}"},"]"]}'],
    ["escaped quotes, backslashes and braces in strings", '{"s":"a \\"quoted\\" } ] { [ \\\\","t":"\\\\","u":"\\\\\\""}'],
    ["escaped quotes in keys", '{"k\\"ey":1,"k}ey":2,"back\\\\slash":3}'],
    ["big integers and other numbers", '{"big":9007199254740993,"huge":123456789012345678901234567890,"neg":-0,"exp":1.5e+300,"frac":-0.000001}'],
    ["unicode", '{"ключ":"значение","emoji":"😀","esc":"\\u00fc\\ud83d\\ude00","raw":"ü"}'],
    ["literals", '{"t":true,"f":false,"n":null}'],
    ["whitespace everywhere", '\n{ "a" : 1 ,\n\t"b"\t:\r\n[ 1 , 2 ] , "c" :{ "d" : "x" } }\n'],
  ];

  for (const [what, json] of samples) {
    test(`rawMembers and rawObject round-trip ${what}`, () => {
      const members = rawMembers(json);
      const parsed = JSON.parse(json) as Record<string, unknown>;
      assert.deepEqual([...members.keys()], Object.keys(parsed));
      for (const [key, text] of members) {
        assert.ok(json.includes(text), `the value of ${key} is a slice of the source: ${text}`);
        assert.deepEqual(JSON.parse(text), parsed[key], `the value of ${key}`);
        assert.equal(text, text.trim(), "no surrounding whitespace");
      }
      const rebuilt = rawObject(members);
      assert.deepEqual(JSON.parse(rebuilt), parsed);
      // A second pass changes nothing: the rebuilt text is stable.
      assert.equal(rawObject(rawMembers(rebuilt)), rebuilt);
    });
  }

  test("big integers keep every digit", () => {
    const members = rawMembers('{"max_age":9007199254740993,"nested":{"seq":18446744073709551615}}');
    assert.equal(members.get("max_age"), "9007199254740993");
    assert.equal(members.get("nested"), '{"seq":18446744073709551615}');
    assert.equal(rawMembers(members.get("nested")!).get("seq"), "18446744073709551615");
    assert.equal(rawObject(members), '{"max_age":9007199254740993,"nested":{"seq":18446744073709551615}}');
  });

  test("members can be replaced and added without touching the others", () => {
    const source = '{"config":{"name":"S","max_age":9007199254740993,"num_replicas":3},"state":{"messages":1}}';
    const top = rawMembers(source);
    const config = rawMembers(top.get("config")!);
    config.set("num_replicas", "1");
    config.set("placement", JSON.stringify({ cluster: "east" }));
    top.set("config", rawObject(config));
    assert.equal(
      rawObject(top),
      '{"config":{"name":"S","max_age":9007199254740993,"num_replicas":1,"placement":{"cluster":"east"}},"state":{"messages":1}}',
    );
  });

  test("a duplicated key keeps its last value, as JSON.parse does", () => {
    assert.equal(rawMembers('{"a":1,"a":2}').get("a"), "2");
  });

  for (const notAnObject of ["[]", "[{}]", '"{}"', "1", "null", "true", " [1,2] "]) {
    test(`rawMembers rejects ${JSON.stringify(notAnObject)}`, () => {
      assert.throws(() => rawMembers(notAnObject), TypeError);
    });
  }
  for (const invalid of ["", "{", '{"a":}', '{"a":1,}', "{'a':1}", '{"a":1} x']) {
    test(`rawMembers rejects invalid JSON ${JSON.stringify(invalid)}`, () => {
      assert.throws(() => rawMembers(invalid), SyntaxError);
    });
  }
});

/**
 * A stream's configuration as the server stores it (and a snapshot carries it): from 2.11,
 * STREAM.INFO adds the server's `_nats.ver` and `_nats.level` to the metadata it shows; they are
 * not part of the stored configuration, and a restored stream shows the restoring server's own.
 */
function storedConfig(infoConfig: string): string {
  return infoConfig.replace(/"_nats\.(ver|level)":"[^"]*",?/g, "").replace(/,}/g, "}");
}
