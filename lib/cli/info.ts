/** `simba info`: model configuration, size, FLOPs and engine. */
import type { Command } from 'commander';

import type { Tokenizer } from '../checkpoint/tokenizer';
import type { ModelInfo } from '../engine/lm';
import { shapeInfo } from '../engine/load';
import { addModelOptions, out, withModel, type ModelFlags } from './args';

interface InfoFlags extends ModelFlags {
  json?: boolean;
}

async function cmdInfo(f: InfoFlags): Promise<void> {
  // A shape's figures come from its config: no random weights are built (mamba-2.8b's are 11 GB).
  if (f.shape !== undefined && f.model === undefined) return printInfo(f, shapeInfo(f.shape, { weights: f.weights }), null);
  await withModel(f, async (model) => printInfo(f, model.info(), model.tokenizer));
}

function printInfo(f: InfoFlags, info: ModelInfo, tok: Tokenizer | null): void {
  const c = info.config;
  const tokenizer = tok
    ? { vocabSize: tok.vocabSize, eosTokenId: tok.eosTokenId, bosTokenId: tok.bosTokenId, padTokenId: tok.padTokenId }
    : null;
  if (f.json) {
    out(JSON.stringify({ ...info, tokenizer }, null, 2) + '\n');
    return;
  }
  const mb = (b: number) =>
    b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : `${(b / 1e3).toFixed(1)} kB`;
  const fl = (x: number) => (x >= 1e9 ? `${(x / 1e9).toFixed(3)} GFLOP` : `${(x / 1e6).toFixed(3)} MFLOP`);
  out(
    [
      `model       ${info.source}`,
      `family      ${familyLine(info)}`,
      `config      d_model ${c.dModel}, layers ${c.nLayer}, d_inner ${c.dInner}, d_state ${c.dState}${c.mamba2 ? '' : `, dt_rank ${c.dtRank}`}, d_conv ${c.dConv}, vocab ${c.vocabSize}` +
        `${c.tieEmbeddings ? ', tied head' : ''}${c.projBias ? ', proj bias' : ''}${c.convBias ? '' : ', no conv bias'}, eps ${c.eps}`,
      `parameters  ${info.paramCount.toLocaleString('en-US')}`,
      `FLOPs/token ${fl(info.flopsPerToken)} (${c.nLayer} layers x ${info.layerFlops.toLocaleString('en-US')} + head ${info.headFlops.toLocaleString('en-US')})`,
      `weights     ${info.weights}, ${mb(info.weightBytes)}`,
      `state       ${mb(info.stateBytes)} per sequence (independent of context length)`,
      `engine      ${info.device}, ${info.isa}, ${info.threads} threads`,
      `tokenizer   ${tok ? `${tok.vocabSize} ids, eos ${tok.eosTokenId}` : 'none'}`,
    ].join('\n') + '\n',
  );
}

/** The family and what sets it apart: Falcon-Mamba's norm epsilon, Mamba-2's heads, groups and dt clamp. */
function familyLine(info: ModelInfo): string {
  const c = info.config;
  if (c.mamba2) {
    const m = c.mamba2;
    return `Mamba-2 (SSD): ${m.nHeads} heads of ${m.headDim}, ${m.nGroups} group(s) of B and C, dt limit [${m.dtLimit[0]}, ${m.dtLimit[1]}]`;
  }
  return info.family === 'falcon-mamba' ? `Falcon-Mamba (mixer norms, eps ${c.mixerRmsEps})` : 'Mamba-1';
}

export function addInfoCommand(program: Command): void {
  addModelOptions(program.command('info').description('model configuration, size, FLOPs and engine'), { shape: true })
    .option('--json', 'print JSON')
    .action((o: InfoFlags) => cmdInfo(o));
}
