import { createHash } from 'node:crypto';
import { esl } from '@storelink/protocols';
import bwip from 'bwip-js';
import sharp from 'sharp';

type EslSize = esl.EslSize;
type EslBpp = esl.EslBpp;
type LabelContent = esl.LabelContent;

/**
 * Tag image renderer. Output is the OEPL raw format: row-major, MSB first, one bit plane
 * (1 = black) for 1 bpp; for 2 bpp the black plane followed by the red plane. Sizes:
 * 2888 / 4736 / 15000 bytes at 1 bpp (1.54", 2.9", 4.2"), double at 2 bpp.
 *
 * Determinism (golden images compare bytes): nothing here depends on system fonts.
 *  - The static template layer (border, rules, promotion banner) is an SVG of shapes
 *    only, rasterised once per (size, bpp, promo) by sharp (librsvg, `crispEdges`, no
 *    text) and cached as a palette canvas.
 *  - Text is drawn from the OCR-B outline font embedded in bwip-js and rasterised by its
 *    pure-JS TrueType renderer (same glyph bits on every machine), thresholded into the
 *    canvas; barcodes and QR codes come from bwip-js' encoders as bar/module lists.
 * This keeps the per-tag path synchronous and cheap (no libvips call per tag), which is
 * what makes >1,000 tags/s possible on two cores; sharp also makes the PNG previews.
 */

const WHITE = 0;
const BLACK = 1;
const RED = 2;

export interface RenderedImage {
  size: EslSize;
  bpp: EslBpp;
  dataType: number;
  raw: Buffer;
  /** OEPL dataVer: first 8 bytes of the image MD5, hex [ESL-CONFIRM-1]. */
  dataVer: string;
}

interface Canvas {
  w: number;
  h: number;
  px: Uint8Array;
}

const FONT = bwip.FontLib.lookup('OCR-B');

interface Glyph {
  bytes: Uint8Array;
  offset: number;
  width: number;
  height: number;
  top: number;
  left: number;
  advance: number;
}
const glyphs = new Map<number, Glyph>();
/** Glyphs are rasterised once per (char, size) and kept (bwip-js' own cache is a small MRU). */
function getGlyph(ch: number, px: number): Glyph {
  const key = px * 65536 + ch;
  let g = glyphs.get(key);
  if (!g) {
    const s = bwip.FontLib.getglyph(FONT, ch, px, px) as unknown as Glyph;
    g = {
      bytes: s.bytes ? s.bytes.slice(s.offset, s.offset + s.width * s.height) : new Uint8Array(0),
      offset: 0,
      width: s.width,
      height: s.height,
      top: s.top,
      left: s.left,
      advance: s.advance,
    };
    glyphs.set(key, g);
  }
  return g;
}

export function dataVerOf(raw: Buffer): string {
  return createHash('md5').update(raw).digest('hex').slice(0, 16);
}

function templateSvg(size: EslSize, promo: boolean, red: boolean): string {
  const { width: w, height: h } = esl.ESL_SIZES[size];
  const banner = red ? '#ff0000' : '#000000';
  const band = Math.round(h * 0.2);
  const promoShape = promo
    ? `<path d="M ${w - Math.round(w * 0.32)} 0 L ${w} 0 L ${w} ${band} L ${w - Math.round(w * 0.28)} ${band} Z" fill="${banner}"/>`
    : '';
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" shape-rendering="crispEdges">
<rect x="0" y="0" width="${w}" height="${h}" fill="#ffffff"/>
<rect x="1" y="1" width="${w - 2}" height="${h - 2}" fill="none" stroke="#000000" stroke-width="2"/>
<rect x="4" y="${band}" width="${w - 8}" height="2" fill="#000000"/>
${promoShape}</svg>`;
}

async function rasterTemplate(size: EslSize, bpp: EslBpp, promo: boolean): Promise<Canvas> {
  const { width: w, height: h } = esl.ESL_SIZES[size];
  const { data, info } = await sharp(Buffer.from(templateSvg(size, promo, bpp === 2)))
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const px = new Uint8Array(w * h);
  const ch = info.channels;
  for (let i = 0; i < w * h; i++) {
    const r = data[i * ch]!;
    const g = data[i * ch + 1]!;
    px[i] = r < 128 && g < 128 ? BLACK : r >= 128 && g < 128 ? RED : WHITE;
  }
  return { w, h, px };
}

function fillRect(c: Canvas, x: number, y: number, w: number, h: number, color: number): void {
  const x0 = Math.max(0, x);
  const y0 = Math.max(0, y);
  const x1 = Math.min(c.w, x + w);
  const y1 = Math.min(c.h, y + h);
  for (let yy = y0; yy < y1; yy++) c.px.fill(color, yy * c.w + x0, yy * c.w + x1);
}

/** Width in pixels of `text` at glyph size `px`. */
function textWidth(text: string, px: number): number {
  let w = 0;
  for (let i = 0; i < text.length; i++) w += getGlyph(text.charCodeAt(i), px).advance;
  return w;
}

/** Draws text with its baseline at `y`; returns the x after the last glyph. */
function drawText(c: Canvas, text: string, x: number, y: number, px: number, color: number): number {
  let pen = x;
  for (let i = 0; i < text.length; i++) {
    const g = getGlyph(text.charCodeAt(i), px);
    const gx = pen + g.left;
    const gy = y - g.top;
    for (let yy = 0; yy < g.height; yy++) {
      const cy = gy + yy;
      if (cy < 0 || cy >= c.h) continue;
      const row = g.offset + yy * g.width;
      for (let xx = 0; xx < g.width; xx++) {
        const cx = gx + xx;
        if (cx >= 0 && cx < c.w && g.bytes[row + xx]! > 127) c.px[cy * c.w + cx] = color;
      }
    }
    pen += g.advance;
  }
  return pen;
}

/** Largest glyph size (<= max) at which `text` fits `width`. */
function fitSize(text: string, width: number, max: number): number {
  let s = max;
  while (s > 8 && textWidth(text, s) > width) s -= 2;
  return s;
}

function clip(text: string, width: number, px: number): string {
  let t = text;
  while (t.length > 1 && textWidth(t, px) > width) t = t.slice(0, -1);
  return t;
}

const barcodeCache = new Map<string, number[]>();
/** Bar/space module widths (starting with a bar) for EAN-13 (13 digits) or Code 128. */
function barModules(text: string): number[] {
  let m = barcodeCache.get(text);
  if (!m) {
    const enc = (bcid: string) => (bwip.raw({ bcid, text }) as unknown as Array<{ sbs: number[] }>)[0]!.sbs;
    try {
      m = /^\d{12,13}$/.test(text) ? enc('ean13') : enc('code128');
    } catch {
      // a wrong EAN check digit: still draw what the price book holds
      m = enc('code128');
    }
    if (barcodeCache.size > 20000) barcodeCache.clear();
    barcodeCache.set(text, m);
  }
  return m;
}

function drawBarcode(c: Canvas, text: string, x: number, y: number, maxW: number, h: number): void {
  const sbs = barModules(text);
  const modules = sbs.reduce((a, b) => a + b, 0);
  const scale = Math.max(1, Math.floor(maxW / modules));
  let pen = x + Math.floor((maxW - modules * scale) / 2);
  for (let i = 0; i < sbs.length; i++) {
    const w = sbs[i]! * scale;
    if (i % 2 === 0) fillRect(c, pen, y, w, h, BLACK);
    pen += w;
  }
}

const qrCache = new Map<string, { n: number; pixs: number[] }>();
function drawQr(c: Canvas, text: string, x: number, y: number, maxSide: number): void {
  let q = qrCache.get(text);
  if (!q) {
    const r = bwip.raw({ bcid: 'qrcode', text, eclevel: 'L' } as never) as unknown as Array<{
      pixs: number[];
      pixx: number;
    }>;
    q = { n: r[0]!.pixx, pixs: r[0]!.pixs };
    if (qrCache.size > 5000) qrCache.clear();
    qrCache.set(text, q);
  }
  const scale = Math.max(1, Math.floor(maxSide / q.n));
  for (let yy = 0; yy < q.n; yy++)
    for (let xx = 0; xx < q.n; xx++)
      if (q.pixs[yy * q.n + xx]) fillRect(c, x + xx * scale, y + yy * scale, scale, scale, BLACK);
}

export function formatPrice(cents: number): string {
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
}

function fmtDate(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getUTCDate()).padStart(2, '0')}.${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

function pack(c: Canvas, bpp: EslBpp): Buffer {
  const plane = (c.w * c.h) >> 3;
  const out = Buffer.alloc(plane * bpp);
  const p = c.px;
  // Unrolled: this loop runs over every pixel of every tag (hot at 1,000+ tags/s).
  if (bpp === 1) {
    for (let i = 0, o = 0; o < plane; i += 8, o++)
      out[o] =
        (p[i] ? 128 : 0) |
        (p[i + 1] ? 64 : 0) |
        (p[i + 2] ? 32 : 0) |
        (p[i + 3] ? 16 : 0) |
        (p[i + 4] ? 8 : 0) |
        (p[i + 5] ? 4 : 0) |
        (p[i + 6] ? 2 : 0) |
        (p[i + 7] ? 1 : 0);
    return out;
  }
  for (let i = 0, o = 0; o < plane; i += 8, o++) {
    let b = 0;
    let r = 0;
    for (let k = 0; k < 8; k++) {
      const v = p[i + k]!;
      b = (b << 1) | (v === BLACK ? 1 : 0);
      r = (r << 1) | (v === RED ? 1 : 0);
    }
    out[o] = b;
    out[plane + o] = r;
  }
  return out;
}

export class TagRenderer {
  private readonly templates = new Map<string, Canvas>();
  private ready: Promise<void> | null = null;
  rendered = 0;

  /** Rasterises every template layer with sharp (once); `render` needs it done. */
  prepare(): Promise<void> {
    this.ready ??= (async () => {
      for (const size of esl.ESL_SIZE_NAMES)
        for (const bpp of [1, 2] as const)
          for (const promo of [false, true])
            this.templates.set(`${size}/${bpp}/${promo}`, await rasterTemplate(size, bpp, promo));
    })();
    return this.ready;
  }

  /** Synchronous: lays the content out on the cached template and packs it. */
  render(size: EslSize, bpp: EslBpp, content: LabelContent): RenderedImage {
    const promo = content.promoCents !== undefined;
    const t = this.templates.get(`${size}/${bpp}/${promo}`);
    if (!t) throw new Error('TagRenderer.prepare() has not finished');
    const c: Canvas = { w: t.w, h: t.h, px: new Uint8Array(t.px) };
    layout(c, size, content, bpp === 2 ? RED : BLACK);
    const raw = pack(c, bpp);
    this.rendered++;
    return {
      size,
      bpp,
      dataType: bpp === 1 ? esl.ESL_DATA_TYPE.RAW_1BPP : esl.ESL_DATA_TYPE.RAW_2BPP,
      raw,
      dataVer: dataVerOf(raw),
    };
  }

  /** A PNG preview of a raw image (for people: docs, the demo, golden fixtures). */
  static toPng(img: { raw: Buffer; size: EslSize; bpp: EslBpp }): Promise<Buffer> {
    const { width: w, height: h } = esl.ESL_SIZES[img.size];
    const rgb = Buffer.alloc(w * h * 3, 255);
    const plane = (w * h) >> 3;
    for (let i = 0; i < w * h; i++) {
      const bit = 0x80 >> (i & 7);
      if (img.raw[i >> 3]! & bit) rgb.fill(0, i * 3, i * 3 + 3);
      else if (img.bpp === 2 && img.raw[plane + (i >> 3)]! & bit) {
        rgb[i * 3 + 1] = 0;
        rgb[i * 3 + 2] = 0;
      }
    }
    return sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toBuffer();
  }
}

function layout(c: Canvas, size: EslSize, ct: LabelContent, accent: number): void {
  const { w, h } = c;
  const band = Math.round(h * 0.2);
  const promo = ct.promoCents !== undefined;
  const pad = 6;
  // Name in the header band (left of the promotion flag when there is one).
  const nameW = promo ? Math.round(w * 0.66) - pad : w - 2 * pad;
  const namePx = Math.max(10, Math.round(band * 0.62));
  drawText(c, clip(ct.name || ct.sku, nameW, namePx), pad, Math.round(band * 0.78), namePx, BLACK);
  if (promo) {
    const salePx = fitSize('SALE', Math.round(w * 0.22), Math.round(band * 0.5));
    drawText(c, 'SALE', w - Math.round(w * 0.22) - 2, Math.round(band * 0.75), salePx, WHITE);
  }

  const qr = ct.code === 'qr' || (ct.code === undefined && size === '4.2');
  const hasCode = ct.code !== 'none' && !!ct.barcode;
  // QR: bottom-right square; barcode: a strip along the bottom.
  const qrSide = qr && hasCode ? Math.round(Math.min(w * 0.3, (h - band) * 0.45)) : 0;
  const codeArea = !hasCode ? 0 : qr ? qrSide : Math.round(h * 0.2);
  const priceRight = w - pad;
  const priceTop = band + pad;
  const priceBottom = h - pad - codeArea;
  const main = formatPrice(promo ? ct.promoCents! : ct.priceCents);
  const mainColor = promo ? accent : BLACK;
  const curPx = Math.max(10, Math.round((priceBottom - priceTop) * 0.22));
  const curW = textWidth(ct.currency, curPx) + 4;
  let bigPx = Math.round((priceBottom - priceTop) * (promo ? 0.62 : 0.8));
  bigPx = fitSize(main, priceRight - pad - curW, bigPx);
  const baseline = priceTop + Math.round(bigPx * 0.95);
  drawText(c, ct.currency, pad, priceTop + curPx, curPx, mainColor);
  drawText(c, main, pad + curW, baseline, bigPx, mainColor);
  if (promo) {
    const regPx = Math.max(10, Math.round((priceBottom - priceTop) * 0.2));
    const reg = formatPrice(ct.priceCents);
    const ry = Math.min(h - pad - 2, baseline + regPx + 4);
    const end = drawText(c, reg, pad, ry, regPx, BLACK);
    fillRect(c, pad, ry - Math.round(regPx * 0.35), end - pad, 2, BLACK); // struck through
    if (ct.promoEndsAt !== undefined) drawText(c, `-${fmtDate(ct.promoEndsAt)}`, end + 6, ry, regPx, accent);
  }
  if (ct.barcode && ct.code !== 'none') {
    if (qr) drawQr(c, ct.barcode, w - pad - qrSide, h - pad - qrSide, qrSide);
    else drawBarcode(c, ct.barcode, pad, h - codeArea - 2, w - 2 * pad, codeArea - 2);
  }
}
