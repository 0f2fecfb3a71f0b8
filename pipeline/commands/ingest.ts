/** `metacurate ingest <source> --out <dir> ...`: decode, validate, resize, hash and shard a source. */
import { Option } from 'commander';
import { ingestStage } from '../../stages/ingest.js';
import { formatSummary } from '../table.js';
import {
  choicesOf, definedOnly, parseBytes, parseCount, parseList, parsePositive, parseSize, parseStageOptions,
  type RegisterCommand,
} from './common.js';

export const registerIngest: RegisterCommand = (program, session) => {
  const schema = ingestStage.options;
  const choice = (flags: string, description: string, key: string) => {
    const opt = new Option(flags, description);
    const values = choicesOf(schema, key);
    return values ? opt.choices(values) : opt;
  };
  program
    .command('ingest')
    .description('Decode, validate, resize, hash and shard a source (IDX, CIFAR, image folder, manifest, dataset) into a dataset')
    .argument('<source>', 'a folder, an IDX/CIFAR file or folder, a CSV/JSONL manifest, or a dataset directory')
    .requiredOption('-o, --out <dir>', 'output dataset directory (must not exist, unless --overwrite)')
    .addOption(choice('--format <format>', 'source format (default: detected)', 'format'))
    .option('--split <split>', 'IDX/CIFAR split: train (default) or test; folders: a sub-folder to use')
    .addOption(choice('--preset <name>', 'class names of a known IDX dataset', 'preset'))
    .option('--size <HxW>', 'working resolution, e.g. 28x28 (default: the source\'s native size)', parseSize)
    .addOption(new Option('--channels <n>', 'channels of the working pixels').choices(['1', '3']).argParser(Number))
    .addOption(choice('--fit <mode>', 'how images are resized to --size (default: cover)', 'fit'))
    .addOption(choice('--background <colour>', 'what transparency is flattened onto and contain pads with (default: black)', 'background'))
    .option('--keep-original', 'keep each encoded original in the image column')
    .option('--dedupe', 'drop exact duplicate images (same decoded pixels)')
    .option('--allow-outside-root', 'let a manifest name files outside its folder')
    .option('--overwrite', 'replace the output if it exists')
    .option('--concurrency <n>', 'images decoded in parallel', parsePositive)
    .option('--shard-rows <n>', 'rows per shard at most', parsePositive)
    .option('--shard-bytes <size>', 'bytes per shard at most, e.g. 256MiB', parseBytes)
    .option('--class-names <a,b,...>', 'class names, in label order', parseList)
    .addOption(choice('--cifar-labels <kind>', 'CIFAR-100: which label becomes `label` (default: fine)', 'cifarLabels'))
    .option('--max-input-pixels <n>', 'refuse larger images unread (decompression bombs)', parsePositive)
    .option('--limit <n>', 'ingest at most n items', parsePositive)
    .option('--seed <n>', 'seed', parseCount)
    .addHelpText('after', '\nExample:\n  metacurate ingest data/builtin/fashion-mnist --split test --out out/fmnist-test')
    .action(async (source: string, flags: Record<string, unknown>, cmd) => {
      const options = parseStageOptions(schema, definedOnly(flags));
      const ctx = session.context(cmd);
      const result = await ingestStage.run(ctx, [source], options);
      session.output(cmd, result, () => `ingested ${source} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...result.summary })}`);
    });
};
