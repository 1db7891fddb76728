// test.mjs - `moestream serve` through the official OpenAI Node client (a client
// nobody here wrote). Run by tests/test_serve_openai.c after `npm ci`:
//   node test.mjs BASE_URL API_KEY MODEL REFERENCE_FILE
// REFERENCE_FILE holds what `moestream run --temp 0 -n 12 --ignore-eos` printed for
// the prompt "Hello there". Prints one line per check; exits 1 on the first failure.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';

const [base, key, model, refFile] = process.argv.slice(2);
const reference = readFileSync(refFile, 'utf8').replace(/\n$/, '');
const client = new OpenAI({ baseURL: base, apiKey: key, maxRetries: 0 });
let checks = 0;
const ok = (what) => { checks++; console.log(`ok ${checks} ${what}`); };

const hello = { model, messages: [{ role: 'user', content: 'Hello there' }], temperature: 0, max_tokens: 12, ignore_eos: true };

// models
const models = await client.models.list();
assert.deepEqual(models.data.map((m) => m.id), [model]);
ok('models.list');

// non-streamed chat == run --temp 0, usage
const whole = await client.chat.completions.create(hello);
assert.equal(whole.object, 'chat.completion');
assert.equal(whole.choices[0].message.role, 'assistant');
assert.equal(whole.choices[0].message.content, reference);
assert.equal(whole.choices[0].finish_reason, 'length');
assert.equal(whole.usage.completion_tokens, 12);
assert.equal(whole.usage.total_tokens, whole.usage.prompt_tokens + 12);
ok('chat.completions.create equals run --temp 0');

// streamed chat reassembles to the same text, usage at the end
const stream = await client.chat.completions.create({ ...hello, stream: true, stream_options: { include_usage: true } });
let text = '', finish = null, usage = null, chunks = 0;
for await (const c of stream) {
  chunks++;
  if (c.choices.length) {
    text += c.choices[0].delta.content ?? '';
    if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
  }
  if (c.usage) usage = c.usage;
}
assert.equal(text, reference);
assert.equal(finish, 'length');
assert.deepEqual(usage, whole.usage);
assert.ok(chunks >= 4);
ok(`streamed chat reassembles (${chunks} chunks)`);

// the SDK's stream helper accumulates the same message
const helper = client.chat.completions.stream(hello);
const final = await helper.finalChatCompletion();
assert.equal(final.choices[0].message.content, reference);
ok('chat.completions.stream finalChatCompletion');

// stop strings
const cut = reference.slice(4, 7);
const stopped = await client.chat.completions.create({ ...hello, stop: [cut] });
assert.equal(stopped.choices[0].finish_reason, 'stop');
// (a chat parser may trim the content's surrounding whitespace)
assert.equal(stopped.choices[0].message.content.trimEnd(), reference.slice(0, reference.indexOf(cut)).trimEnd());
ok(`stop string ${JSON.stringify(cut)}`);

// seeds
const seeded = { model, messages: [{ role: 'user', content: 'Tell me' }], temperature: 1.5, top_k: 0, max_tokens: 16, ignore_eos: true, seed: 7 };
const a = await client.chat.completions.create(seeded);
const b = await client.chat.completions.create(seeded);
const c = await client.chat.completions.create({ ...seeded, seed: 8 });
assert.equal(a.choices[0].message.content, b.choices[0].message.content);
assert.notEqual(a.choices[0].message.content, c.choices[0].message.content);
ok('seed reproducibility');

// tools (the server's --script answers this message with a DeepSeek-V3 tool call)
const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
const ask = { model, messages: [{ role: 'user', content: 'What is the weather in Paris?' }], tools };
const call = await client.chat.completions.create(ask);
assert.equal(call.choices[0].finish_reason, 'tool_calls');
assert.equal(call.choices[0].message.content, 'Checking.');
const tc = call.choices[0].message.tool_calls;
assert.equal(tc.length, 1);
assert.equal(tc[0].type, 'function');
assert.equal(tc[0].function.name, 'get_weather');
assert.deepEqual(JSON.parse(tc[0].function.arguments), { city: 'Paris' });
ok('tool call');
const tstream = await client.chat.completions.create({ ...ask, stream: true });
const calls = [];
let content = '', tfinish = null;
for await (const ch of tstream) {
  const d = ch.choices[0]?.delta ?? {};
  content += d.content ?? '';
  for (const t of d.tool_calls ?? []) {
    calls[t.index] ??= { id: '', name: '', arguments: '' };
    if (t.id) calls[t.index].id = t.id;
    if (t.function?.name) calls[t.index].name += t.function.name;
    if (t.function?.arguments) calls[t.index].arguments += t.function.arguments;
  }
  if (ch.choices[0]?.finish_reason) tfinish = ch.choices[0].finish_reason;
}
assert.equal(tfinish, 'tool_calls');
assert.equal(content, 'Checking.');
assert.deepEqual(calls.map((x) => [x.name, JSON.parse(x.arguments)]), [['get_weather', { city: 'Paris' }]]);
ok('streamed tool call deltas');
const runner = client.chat.completions.stream({ ...ask });
const tfinal = await runner.finalChatCompletion();
assert.equal(tfinal.choices[0].message.tool_calls[0].function.name, 'get_weather');
ok('stream helper accumulates the tool call');

// completions
const comp = await client.completions.create({ model, prompt: 'Hello', max_tokens: 5, temperature: 0, ignore_eos: true });
assert.equal(comp.object, 'text_completion');
assert.equal(comp.usage.completion_tokens, 5);
const cstream = await client.completions.create({ model, prompt: 'Hello', max_tokens: 5, temperature: 0, ignore_eos: true, stream: true });
let ctext = '';
for await (const ch of cstream) ctext += ch.choices[0]?.text ?? '';
assert.equal(ctext, comp.choices[0].text);
ok('completions, streamed and not');

// errors arrive as the SDK's typed errors
await assert.rejects(client.chat.completions.create({ ...hello, model: 'gpt-4' }), (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
await assert.rejects(client.chat.completions.create({ ...hello, n: 2 }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'n');
await assert.rejects(client.chat.completions.create({ ...hello, frobnicate: 1 }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'frobnicate');
const wrong = new OpenAI({ baseURL: base, apiKey: 'wrong', maxRetries: 0 });
await assert.rejects(wrong.chat.completions.create(hello), (e) => e instanceof OpenAI.AuthenticationError);
ok('errors: 404 model, 400 n, 400 unknown field, 401 key');

console.log(`all ${checks} checks passed`);
