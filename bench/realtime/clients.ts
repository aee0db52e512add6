/** bench/realtime's clients: one thread's share of the WebSocket clients (see run.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';

const { url, rooms } = workerData as { url: string; rooms: string[] };
const port = parentPort as NonNullable<typeof parentPort>;
const T_RE = /"body":"t=(\d+)/;
let received = 0;
let timing = false;
const latencies: number[] = [];
const sockets: WebSocket[] = [];

async function connectAll(): Promise<void> {
  for (let i = 0; i < rooms.length; i += 50) {
    await Promise.all(
      rooms.slice(i, i + 50).map(
        (room) =>
          new Promise<void>((resolve, reject) => {
            const ws = new WebSocket(`${url.replace('http', 'ws')}/api/v1/realtime`, { perMessageDeflate: false });
            sockets.push(ws);
            ws.on('error', reject);
            ws.on('message', (data: Buffer) => {
              if (data[2] === 0x74 && data[9] === 0x65) {
                // {"type":"event"…
                received++;
                if (timing) latencies.push(Date.now() - Number(T_RE.exec(data.toString())?.[1]));
                return;
              }
              const text = data.toString();
              if (text.startsWith('{"type":"welcome"')) {
                ws.send(JSON.stringify({ type: 'subscribe', id: 'm', collection: 'messages', filter: `room = "${room}"` }));
              } else if (text.startsWith('{"type":"subscribed"')) resolve();
            });
          }),
      ),
    );
    port.postMessage({ type: 'progress', n: Math.min(50, rooms.length - i) });
  }
}

port.on('message', async (m: { type: string }) => {
  if (m.type === 'ready') {
    await connectAll();
    port.postMessage({ type: 'ready' });
  } else if (m.type === 'count') port.postMessage({ type: 'count', n: received });
  else if (m.type === 'time') {
    timing = true;
    port.postMessage({ type: 'time' });
  } else if (m.type === 'latencies') {
    timing = false;
    port.postMessage({ type: 'latencies', latencies });
  }
});
