/**
 * The Simba "highway map" of one prompt (the CLI's `simba inspect`): which token each layer still
 * processes. x = token position, y = layer (0 at the bottom); a filled cell means the token went
 * through that layer (token t is processed by layers 0 .. exitLayer[t]-1).
 *
 * @example
 *   const map = await highwayMap(model, model.tokenizer!.encode(text), { flops: 0.6 });
 *   fs.writeFileSync('map.svg', renderHighwaySvg(map, { title: 'brown-mamba-s' }));
 *   console.log(formatHighwaySummary(map));
 */
import { SimbaError } from '../errors';
import type { LanguageModel } from '../engine/lm';
import { validateSimbaOptions, type SimbaOptions } from '../engine/simba';
import { LIMITS } from '../limits';
import * as v from '../validate';

/** The largest prompt drawn (beyond it the columns become unreadable). */
const MAX_MAP_TOKENS = LIMITS.mapTokens;

export interface HighwayMap {
  ids: number[];
  /** Display text of each token (decoded on its own), or its id without a tokenizer. */
  labels: string[];
  /** Layers each token went through. */
  exitLayer: number[];
  /** Tokens processed by each layer. */
  processed: number[];
  nLayer: number;
  relFlops: number;
  simba: SimbaOptions;
}

/** Prefills the prompt with Simba (no logits) and records where each token exits. */
export async function highwayMap(model: LanguageModel, ids: ArrayLike<number>, simba: SimbaOptions): Promise<HighwayMap> {
  if (!v.is.arrayLike(ids)) throw v.argError('highwayMap', `ids must be an array of token ids, got ${v.describeType(ids)}`);
  validateSimbaOptions(model.config, simba, 'highwayMap');
  if (ids.length > MAX_MAP_TOKENS)
    throw new SimbaError(
      'E_ARG',
      `inspect: the prompt has ${ids.length} tokens; the map draws at most ${MAX_MAP_TOKENS} (use a shorter prompt)`,
    );
  const [r] = await model.prefill([{ tokens: ids }], { logits: 'none', simba });
  r.sequence.dispose();
  const list = Array.from(ids);
  const tok = model.tokenizer;
  return {
    ids: list,
    labels: list.map((id) => (tok ? tok.decode([id]) : `#${id}`)),
    exitLayer: Array.from(r.exitLayer),
    processed: r.processed,
    nLayer: model.config.nLayer,
    relFlops: r.relFlops,
    simba,
  };
}

/* eslint-disable no-control-regex -- matching the control characters XML forbids is the point here */
function xml(s: string): string {
  return (
    s
      // Characters XML 1.0 forbids (C0 controls other than tab/newline/CR, lone surrogates) become U+FFFD.
      .replace(
        /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/gu,
        '\ufffd',
      )
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&apos;')
  );
}
/* eslint-enable no-control-regex */

/** A token as shown on the axis: leading space dropped, whitespace-only tokens as visible marks. */
function displayToken(s: string): string {
  const vis = s.replace(/\r/g, '').replace(/\n/g, '↵').replace(/\t/g, '⇥');
  const t = vis.replace(/^ +/, '');
  if (t === '') return vis.length ? '␣'.repeat(Math.min(3, vis.length)) : '∅';
  return t.length > 14 ? `${t.slice(0, 13)}…` : t;
}

function describeSimba(o: SimbaOptions): string {
  const budget =
    o.flops !== undefined
      ? `flops ${o.flops}`
      : o.rLast !== undefined
        ? `keep-last ${o.rLast}`
        : o.keepCounts
          ? `keep-counts ${o.keepCounts.join(',')}`
          : o.keepRatios
            ? `keep-ratios ${o.keepRatios.join(',')}`
            : 'dense';
  const parts = [budget, `criterion ${o.criterion ?? 'simba'}`];
  if ((o.criterion ?? 'simba') === 'simba' || o.criterion === 'local') parts.push(`reduce ${o.reduce ?? 'max'}`);
  if (o.start) parts.push(`start ${o.start}`);
  if (o.protect?.first) parts.push(`protect-first ${o.protect.first}`);
  if (o.protect?.last) parts.push(`protect-last ${o.protect.last}`);
  return parts.join(', ');
}

export interface SvgOptions {
  /** First title line, e.g. the model's name. */
  title?: string;
}

/** Tokens per panel: longer prompts wrap onto several panels so every column keeps a readable label. */
export const TOKENS_PER_PANEL = 96;

/**
 * The map as a standalone SVG document. Each processed (token, layer) cell is one
 * `<rect class="on" .../>`; prompts longer than TOKENS_PER_PANEL (+ a little) wrap onto panels.
 */
export function renderHighwaySvg(map: HighwayMap, options?: SvgOptions): string {
  const o = v.options('renderHighwaySvg', options, ['title'] as const);
  const opts: SvgOptions = { title: v.string('renderHighwaySvg', 'title', o.title) };
  if (!v.is.object(map) || !Array.isArray(map.ids))
    throw v.argError('renderHighwaySvg', `map must be a HighwayMap (from highwayMap()), got ${v.describeType(map)}`);
  const T = map.ids.length,
    L = map.nLayer;
  const perPanel = T <= TOKENS_PER_PANEL + 24 ? T : TOKENS_PER_PANEL;
  const panels = Math.ceil(T / perPanel);
  const cw = Math.max(10, Math.min(18, Math.floor(1400 / perPanel)));
  const ch = Math.max(8, Math.min(24, Math.floor(480 / L)));
  const font = Math.min(11, cw - 2);
  const labelLen = Math.max(1, ...map.labels.map((s) => [...displayToken(s)].length));
  const labelH = 14 + Math.ceil(labelLen * font * 0.62);
  const left = 64,
    right = 120,
    top = 96,
    gapY = 18;
  const gridW = perPanel * cw,
    gridH = L * ch,
    panelH = gridH + labelH + gapY;
  const width = Math.max(left + gridW + right, 660),
    height = top + panels * panelH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
  );
  out.push(
    `<style>.on{fill:#2f6fb3}.off{fill:#eef1f5}.ax{font-size:11px;fill:#333}.tk{font-size:${font}px;fill:#222}` +
      `.t1{font-size:15px;font-weight:bold;fill:#111}.t2{font-size:12px;fill:#444}</style>`,
  );
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text class="t1" x="${left}" y="22">${xml(`${opts.title ? `${opts.title}: ` : ''}Simba highway map`)}</text>`);
  out.push(
    `<text class="t2" x="${left}" y="40">${xml(`${T} tokens x ${L} layers; ${describeSimba(map.simba)}; relFlops ${map.relFlops.toFixed(3)}`)}</text>`,
  );
  out.push(
    `<text class="t2" x="${left}" y="58">${xml(`tokens processed per layer (0 to ${L - 1}): ${map.processed.join(', ')}`)}</text>`,
  );
  out.push(
    `<rect class="on" x="${left}" y="68" width="12" height="12"/><text class="t2" x="${left + 17}" y="78">processed</text>`,
  );
  out.push(
    `<rect x="${left + 100}" y="68" width="12" height="12" fill="#eef1f5" stroke="#c9ced6"/>` +
      `<text class="t2" x="${left + 117}" y="78">dropped (exited early; its residual stream goes to the head)</text>`,
  );
  for (let p = 0; p < panels; p++) {
    const t0 = p * perPanel,
      t1 = Math.min(T, t0 + perPanel),
      n = t1 - t0;
    const x0 = left,
      y0 = top + p * panelH;
    const yOf = (l: number) => y0 + (L - 1 - l) * ch; // layer 0 at the bottom
    out.push(`<g class="panel">`);
    out.push(`<rect class="off" x="${x0}" y="${y0}" width="${n * cw}" height="${gridH}"/>`);
    for (let t = t0; t < t1; t++) {
      const e = Math.max(0, Math.min(L, map.exitLayer[t]));
      for (let l = 0; l < e; l++)
        out.push(`<rect class="on" x="${x0 + (t - t0) * cw}" y="${yOf(l)}" width="${cw - 1}" height="${ch - 1}"/>`);
    }
    for (let l = 0; l < L; l++) {
      if (L > 32 && l % Math.ceil(L / 32) !== 0 && l !== L - 1) continue;
      out.push(`<text class="ax" x="${x0 - 8}" y="${yOf(l) + ch / 2 + 4}" text-anchor="end">layer ${l}</text>`);
    }
    // Kept per layer within this panel's tokens.
    for (let l = 0; l < L; l++) {
      if (L > 32 && l % Math.ceil(L / 32) !== 0 && l !== L - 1) continue;
      let k = 0;
      for (let t = t0; t < t1; t++) if (map.exitLayer[t] > l) k++;
      out.push(`<text class="ax" x="${x0 + n * cw + 8}" y="${yOf(l) + ch / 2 + 4}">${k} / ${n}</text>`);
    }
    const yb = y0 + gridH + 5;
    for (let t = t0; t < t1; t++) {
      const x = x0 + (t - t0) * cw + cw / 2 + font / 3;
      out.push(
        `<g><title>${xml(`token ${t}: ${JSON.stringify(map.labels[t])} (id ${map.ids[t]}), processed by ${map.exitLayer[t]} layer(s)`)}</title>` +
          `<text class="tk" transform="translate(${x.toFixed(1)},${yb}) rotate(-90)" text-anchor="end">${xml(displayToken(map.labels[t]))}</text></g>`,
      );
    }
    if (panels > 1) out.push(`<text class="ax" x="${x0 + n * cw + 8}" y="${yb + 12}">tokens ${t0}-${t1 - 1}</text>`);
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** A few lines of text: the tokens each layer processes, with a bar. */
export function formatHighwaySummary(map: HighwayMap): string {
  const T = map.ids.length,
    lines: string[] = [];
  lines.push(`${T} tokens, ${describeSimba(map.simba)}, relFlops ${map.relFlops.toFixed(4)}`);
  for (let l = map.nLayer - 1; l >= 0; l--) {
    const n = map.processed[l],
      bar = Math.round((30 * n) / T);
    lines.push(
      `layer ${String(l).padStart(2)}  ${'#'.repeat(bar)}${'.'.repeat(30 - bar)}  ${String(n).padStart(String(T).length)} / ${T}`,
    );
  }
  return lines.join('\n');
}
