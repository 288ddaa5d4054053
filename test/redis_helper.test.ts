import Redis from 'ioredis';
import { connect } from 'node:net';
import { startRedis } from './helpers/redis_server';

describe('test/helpers/redis_server', () => {
  test('starts a real redis-server on a free loopback port, answers, and is gone after kill', async () => {
    const r = await startRedis();
    const c = new Redis(r.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await c.connect();
      expect(await c.set('k', 'v')).toBe('OK');
      expect(await c.get('k')).toBe('v');
    } finally {
      await c.quit();
      await r.kill();
    }
    expect(r.proc.signalCode).toBe('SIGKILL');
    const refused = await new Promise<string>((resolve) => {
      const s = connect(r.port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve('connected')));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });
});
