/**
 * `simba serve` as a child process: it listens, answers, and on SIGTERM stops accepting, lets the
 * running stream finish, and exits 0.
 */
import { spawnServe, until } from './helpers';

test('SIGTERM drains the running stream, then exits 0', async () => {
  const { child, url, exited, stderr: errText } = await spawnServe(['--port', '0', '--grace', '20', '--model-name', 'm']);
  try {
    expect((await fetch(`${url}/health`)).status).toBe(200);
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'm',
        prompt: 'The jury',
        max_tokens: 300,
        stream: true,
        logit_bias: { 0: -100 },
        stream_options: { include_usage: true },
      }),
    });
    const reader = r.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    child.kill('SIGTERM');
    // draining: new requests are refused with 503 while the stream goes on
    expect(await until(async () => (await fetch(`${url}/health`)).status === 503, 10000)).toBe(true);
    let text = Buffer.from(first.value!).toString();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(text).toContain('"completion_tokens":300');
    expect(await exited).toBe(0);
    expect(errText()).toMatch(/SIGTERM: draining/);
    expect(errText()).toMatch(/stopped/);
  } finally {
    child.kill('SIGKILL');
  }
}, 60000);
