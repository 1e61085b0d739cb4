// Clients for the serve tests that fetch cannot be: raw sockets that send a request in pieces, at
// their own pace or not at all, and see exactly what comes back (or that the connection closed).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { deflateSync } from 'node:zlib';

export interface RawClient {
  socket: Socket;
  /** Everything received so far. */
  readonly text: string;
  /** Writes, resolving once the bytes are handed to the kernel. */
  write(data: string | Uint8Array): Promise<void>;
  /** Resolves with everything received once the connection has closed (reset included). */
  closed: Promise<string>;
}

export function rawClient(port: number): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk) => (text += String(chunk)));
    const closed = new Promise<string>((done) => socket.on('close', () => done(text)));
    socket.on('error', () => {}); // a reset shows as the close, with what came before it
    socket.once('connect', () =>
      resolve({
        socket,
        get text() {
          return text;
        },
        write: (data) => new Promise<void>((done, fail) => socket.write(data, (error) => (error ? fail(error) : done()))),
        closed,
      }),
    );
    socket.once('error', reject);
  });
}

/** The head of a POST with these headers (a Content-Length, or Transfer-Encoding: chunked). */
export function postHead(path: string, headers: Record<string, string | number>): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
}

/** The start of a request head that never ends (the blank line never comes), for dripping. */
export const endlessHead = `POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'a'.repeat(2000)}`;

/** Sends `text` one byte every `everyMs` until the connection closes; resolves with what came back. */
export async function drip(client: RawClient, text: string, everyMs: number): Promise<string> {
  for (const byte of text) {
    if (client.socket.destroyed) break;
    client.socket.write(byte);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  return client.closed;
}

/** Polls `condition` until it holds (the tests wait for states, not for fixed times). */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, limitMs = 15_000): Promise<void> {
  const start = Date.now();
  while (!(await condition())) {
    if (Date.now() - start > limitMs) throw new Error(`waited ${limitMs} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A valid black PNG of side x side pixels, one bit each: a few tens of KB that decode to a huge
 * image (16383² is libvips' default limit), made here in a fraction of a second.
 */
export function hugeBlackPng(side: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0);
  header.writeUInt32BE(side, 4);
  header.set([1, 0, 0, 0, 0], 8); // bit depth 1, greyscale, deflate, no filter, not interlaced
  const rows = Buffer.alloc(side * (1 + Math.ceil(side / 8))); // filter byte 0 and zero bits, every row
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', header), pngChunk('IDAT', deflateSync(rows)), pngChunk('IEND', new Uint8Array(0))]);
}

/** `castling-vit serve` in a child process, once it prints its address. */
export async function startCli(cli: string, args: string[]): Promise<{ child: ChildProcessWithoutNullStreams; port: number; stderr: () => string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [cli, 'serve', ...args, '--port', '0'], { stdio: 'pipe' });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void exited.then((code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
  return { child, port, stderr: () => stderr, exited };
}
