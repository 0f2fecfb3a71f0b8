/** `metacurate ingest <source> --out <dir> ...`: decode, validate, resize, hash and shard a source. */
import { ingestStage, type IngestResult } from '../../stages/ingest.js';
import { formatSummary } from '../table.js';
import { parseBytes, parseList, parseSize, type RegisterCommand } from './common.js';
import { registerStageCommand } from './stage-command.js';

export const registerIngest: RegisterCommand = (program, session) => {
  registerStageCommand<IngestResult>(program, session, ingestStage, {
    argument: { name: 'source', description: 'a folder, an IDX/CIFAR file or folder, a CSV/JSONL manifest, or a dataset directory' },
    flags: {
      size: { arg: 'HxW', parse: parseSize },
      shardBytes: { arg: 'size', parse: parseBytes },
      classNames: { arg: 'a,b,...', parse: parseList },
    },
    help: () => 'Example:\n  metacurate ingest data/builtin/fashion-mnist --split test --out out/fmnist-test',
    format: (result, source) => `ingested ${source} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...result.summary })}`,
  });
};
