// A dependency-free PNG scatter plot for the jd benches: x and y in [0, 1] with ticks every 0.1,
// numeric tick labels, axis titles and a legend drawn in a 3×5 pixel font, and optional dashed
// guide lines (the target: 0.9 parameters saved). The project has no plotting or canvas library,
// and one scatter of a few dozen points does not justify a native canvas dependency.
import { deflateSync } from 'node:zlib';

export type Rgb = readonly [number, number, number];
export type Marker = 'disc' | 'ring' | 'square';

export interface PlotPoint {
  x: number;
  y: number;
  color: Rgb;
  marker: Marker;
}

export interface PlotOptions {
  xLabel: string;
  yLabel: string;
  legend: ReadonlyArray<{ label: string; color: Rgb; marker: Marker }>;
  /** Dashed vertical lines at these x. */
  xGuides?: readonly number[];
}

const W = 640;
const H = 480;
const LEFT = 50;
const RIGHT = 20;
const TOP = 20;
const BOTTOM = 50;
const SCALE = 2;

// Glyph rows, top to bottom, 3 bits each (leftmost pixel = 4).
const FONT: Record<string, readonly number[]> = {
  '0': [7, 5, 5, 5, 7], '1': [2, 6, 2, 2, 7], '2': [7, 1, 7, 4, 7], '3': [7, 1, 7, 1, 7], '4': [5, 5, 7, 1, 1],
  '5': [7, 4, 7, 1, 7], '6': [7, 4, 7, 5, 7], '7': [7, 1, 1, 1, 1], '8': [7, 5, 7, 5, 7], '9': [7, 5, 7, 1, 7],
  '.': [0, 0, 0, 0, 2], '-': [0, 0, 7, 0, 0], '=': [0, 7, 0, 7, 0], ' ': [0, 0, 0, 0, 0], '(': [1, 2, 2, 2, 1], ')': [4, 2, 2, 2, 4], ',': [0, 0, 0, 2, 4],
  A: [2, 5, 7, 5, 5], B: [6, 5, 6, 5, 6], C: [7, 4, 4, 4, 7], D: [6, 5, 5, 5, 6], E: [7, 4, 6, 4, 7], F: [7, 4, 6, 4, 4], G: [7, 4, 5, 5, 7],
  H: [5, 5, 7, 5, 5], I: [7, 2, 2, 2, 7], J: [1, 1, 1, 5, 7], K: [5, 5, 6, 5, 5], L: [4, 4, 4, 4, 7], M: [5, 7, 7, 5, 5], N: [6, 5, 5, 5, 5],
  O: [7, 5, 5, 5, 7], P: [7, 5, 7, 4, 4], R: [6, 5, 6, 5, 5], S: [7, 4, 7, 1, 7], T: [7, 2, 2, 2, 2], U: [5, 5, 5, 5, 7], V: [5, 5, 5, 5, 2],
  W: [5, 5, 7, 7, 5], X: [5, 5, 2, 5, 5], Y: [5, 5, 2, 2, 2], Z: [7, 1, 2, 4, 7],
};

class Canvas {
  readonly px = new Uint8Array(W * H * 3).fill(255);

  put(x: number, y: number, c: Rgb): void {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    this.px.set(c, (y * W + x) * 3);
  }

  text(s: string, x: number, y: number, c: Rgb = [0, 0, 0], vertical = false): void {
    [...s.toUpperCase()].forEach((ch, i) => {
      const rows = FONT[ch] ?? FONT[' '];
      rows?.forEach((bits, row) => {
        for (let col = 0; col < 3; col++) {
          if (!(bits & (4 >> col))) continue;
          for (let dy = 0; dy < SCALE; dy++) for (let dx = 0; dx < SCALE; dx++) {
            const u = (i * 4 + col) * SCALE + dx;
            const v = row * SCALE + dy;
            if (vertical) this.put(x + v, y - u, c);
            else this.put(x + u, y + v, c);
          }
        }
      });
    });
  }

  marker(cx: number, cy: number, c: Rgb, kind: Marker): void {
    for (let dy = -4; dy <= 4; dy++) for (let dx = -4; dx <= 4; dx++) {
      const r2 = dx * dx + dy * dy;
      const on = kind === 'square' ? Math.max(Math.abs(dx), Math.abs(dy)) <= 3 : kind === 'disc' ? r2 <= 12 : r2 <= 16 && r2 >= 7;
      if (on) this.put(cx + dx, cy + dy, c);
    }
  }
}

const textWidth = (s: string): number => s.length * 4 * SCALE;

export function scatterPng(points: readonly PlotPoint[], opts: PlotOptions): Buffer {
  const cv = new Canvas();
  const plotW = W - LEFT - RIGHT;
  const plotH = H - TOP - BOTTOM;
  const sx = (x: number): number => Math.round(LEFT + x * plotW);
  const sy = (y: number): number => Math.round(H - BOTTOM - y * plotH);
  for (let t = 0; t <= 10; t++) {
    const v = t / 10;
    for (let y = TOP; y <= H - BOTTOM; y++) if (t > 0) cv.put(sx(v), y, [235, 235, 235]);
    for (let x = LEFT; x <= W - RIGHT; x++) if (t > 0) cv.put(x, sy(v), [235, 235, 235]);
    for (let k = 0; k < 5; k++) {
      cv.put(sx(v), H - BOTTOM + k, [0, 0, 0]);
      cv.put(LEFT - k, sy(v), [0, 0, 0]);
    }
    const label = v.toFixed(1);
    cv.text(label, sx(v) - textWidth(label) / 2, H - BOTTOM + 8);
    cv.text(label, LEFT - 8 - textWidth(label), sy(v) - 5);
  }
  for (const g of opts.xGuides ?? []) for (let y = TOP; y <= H - BOTTOM; y++) if (Math.floor(y / 4) % 2 === 0) cv.put(sx(g), y, [120, 120, 120]);
  for (let x = LEFT; x <= W - RIGHT; x++) cv.put(x, H - BOTTOM, [0, 0, 0]);
  for (let y = TOP; y <= H - BOTTOM; y++) cv.put(LEFT, y, [0, 0, 0]);
  cv.text(opts.xLabel, LEFT + (plotW - textWidth(opts.xLabel)) / 2, H - 20);
  cv.text(opts.yLabel, 6, TOP + (plotH + textWidth(opts.yLabel)) / 2, [0, 0, 0], true);
  for (const p of points) if (p.x >= 0 && p.x <= 1) cv.marker(sx(p.x), sy(Math.min(1, Math.max(0, p.y))), p.color, p.marker);
  opts.legend.forEach((l, i) => {
    const y = TOP + 10 + 16 * i;
    cv.marker(LEFT + 16, y + 4, l.color, l.marker);
    cv.text(l.label, LEFT + 28, y);
  });
  return encodePng(cv.px, W, H);
}

function encodePng(px: Uint8Array, w: number, h: number): Buffer {
  const raw = Buffer.alloc(h * (1 + w * 3));
  for (let y = 0; y < h; y++) {
    raw[y * (1 + w * 3)] = 0; // filter: none
    Buffer.from(px.buffer, y * w * 3, w * 3).copy(raw, y * (1 + w * 3) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

// zlib.crc32 arrived in Node 22; the project supports Node 20.
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}
