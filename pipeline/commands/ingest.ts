/** `metacurate ingest <source> --out <dir> ...`: decode, validate, resize, hash and shard a source. */
import { ingestStage, type IngestResult } from '../../stages/ingest.js';
import { formatSummary } from '../table.js';
import type { RegisterCommand } from './common.js';
import { registerStageCommand } from './stage-command.js';

export const registerIngest: RegisterCommand = (program, session) => {
  registerStageCommand<IngestResult>(program, session, ingestStage, {
    queue: true,
    argument: { name: 'source', description: 'a folder, an IDX/CIFAR file or folder, a CSV/JSONL manifest, a dataset directory, or a Parquet file or folder' },
    flags: {
      // Their text forms (28x28, 256MiB, a,b,c) are parsed by the options' schema, as in pipeline files.
      size: { arg: 'HxW' },
      shardBytes: { arg: 'size' },
      maxFileBytes: { arg: 'size' },
      classNames: { arg: 'a,b,...' },
    },
    help: () => 'Example:\n  metacurate ingest data/builtin/fashion-mnist --split test --out out/fmnist-test',
    format: (result, source) => `ingested ${source} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...result.summary })}`,
  });
};
