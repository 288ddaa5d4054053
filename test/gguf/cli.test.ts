/**
 * GGUF files through the CLI: `simba info --model x.gguf` reports the file's family and default
 * storage, `simba generate` runs it, and `simba serve --model x.gguf` answers chat requests with the
 * file's tokenizer.chat_template.
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { openGguf } from '../../lib/checkpoint/gguf';
import { ggufTokenizer } from '../../lib/checkpoint/gguf_model';
import { encodeGguf, type GgufWriteValue } from '../../bench/gguf_writer';
import { tmpDir } from '../helpers/util';
import { spawnServe } from '../serve/helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli', 'main.js');
const FIX = path.join(ROOT, 'test', 'fixtures', 'gguf');
const work = tmpDir('simba-gguf-cli-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function simba(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, SIMBA_DEBUG: '' } }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

/** A copy of a fixture GGUF with more metadata (tensors and the rest unchanged). */
async function withMetadata(src: string, extra: Record<string, GgufWriteValue>): Promise<string> {
  const g = await openGguf(src);
  const fd = fs.openSync(src, 'r');
  try {
    const tensors = [...g.tensors.values()].map((t) => {
      const data = Buffer.alloc(t.byteLength);
      fs.readSync(fd, data, 0, t.byteLength, t.byteOffset);
      return { name: t.name, dims: t.dims, type: t.type, data };
    });
    const file = path.join(work, `${path.basename(src, '.gguf')}-${Object.keys(extra).join('-')}.gguf`);
    fs.writeFileSync(file, encodeGguf({ ...(g.metadata as Record<string, GgufWriteValue>), ...extra }, tensors));
    return file;
  } finally {
    fs.closeSync(fd);
  }
}

test('simba info --model x.gguf: the family and the default storage of the file', async () => {
  const [q8, falcon] = await Promise.all([
    simba(['info', '--model', path.join(FIX, 'mamba-q8_0.gguf'), '--json']),
    simba(['info', '--model', path.join(FIX, 'falcon-f32.gguf'), '--json']),
  ]);
  expect(q8.code).toBe(0);
  expect(JSON.parse(q8.stdout)).toMatchObject({ weights: 'int8', family: 'mamba', config: { dModel: 32, nLayer: 2 } });
  expect(JSON.parse(falcon.stdout)).toMatchObject({ weights: 'f32', family: 'falcon-mamba', config: { tieEmbeddings: false } });
  const bf16 = await simba(['info', '--model', path.join(FIX, 'mamba-q8_0.gguf'), '--weights', 'bf16', '--json']);
  expect(JSON.parse(bf16.stdout)).toMatchObject({ weights: 'bf16' });
});

test('simba info on a file that is not GGUF nor a folder is a clean error', async () => {
  const r = await simba(['info', '--model', path.join(FIX, 'make_fixtures.sh')]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^simba: .*neither a folder .* nor a GGUF file\n$/);
});

test('simba serve --model x.gguf answers chat requests rendered with tokenizer.chat_template', async () => {
  const template = '{% for m in messages %}<<{{ m.content }}>>{% endfor %}{{ eos_token }}';
  const file = await withMetadata(path.join(FIX, 'mamba-f32.gguf'), { 'tokenizer.chat_template': template });
  const tok = ggufTokenizer(await openGguf(file));
  const { child, url, exited } = await spawnServe(['--model', file, '--port', '0', '--model-name', 'm']);
  try {
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'the fox' }], max_tokens: 3, temperature: 0 }),
    });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
    // the prompt is the file's template rendered, eos_token = the file's eos token text
    expect(body.usage.prompt_tokens).toBe(tok.encode('<<the fox>><|endoftext|>').length);
    expect(body.usage.prompt_tokens).not.toBe(tok.encode('User: the fox\nAssistant:').length);
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  } finally {
    child.kill('SIGKILL');
  }
}, 60000);
