/**
 * Builds the embedded default dataset, data/builtin/fashion-mnist/: a stratified,
 * seeded subset of Fashion-MNIST (600 train + 100 test images per class) written
 * as gzip IDX files with the upstream names, so the IDX source reads it exactly
 * like the full set. Output bytes depend only on the input files and the seed.
 *
 *   npm run build && node dist/scripts/make-builtin.js [--src DIR] [--out DIR] [--seed N]
 *
 * --src defaults to Debian's dataset-fashion-mnist install location.
 */
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Rng } from '../core/rng.js';
import { sha256Hex } from '../core/hash.js';
import {
  encodeIdxImages, encodeIdxLabels, gzipDeterministic, openIdxImages, readIdxLabels,
} from '../data/sources/idx.js';
import { FASHION_MNIST_CLASSES } from '../data/sources/index.js';

const DEFAULT_SRC = '/usr/share/datasets/fashion-mnist';
const SPLITS = [
  { prefix: 'train', perClass: 600 },
  { prefix: 't10k', perClass: 100 },
] as const;

/** The repository root: the nearest folder above this file with metacurate's package.json. */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'metacurate') return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the metacurate repository root');
    dir = up;
  }
}

/** Indices of a stratified sample: `perClass` per class, drawn with `rng`, in ascending order. */
function stratifiedSample(labels: Uint8Array, numClasses: number, perClass: number, rng: Rng): number[] {
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  labels.forEach((l, i) => byClass[l]?.push(i));
  const picked: number[] = [];
  for (let c = 0; c < numClasses; c++) {
    if (byClass[c].length < perClass) throw new Error(`class ${c} has ${byClass[c].length} images, fewer than ${perClass}`);
    picked.push(...rng.shuffle(byClass[c]).slice(0, perClass));
  }
  return picked.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      src: { type: 'string', default: DEFAULT_SRC },
      out: { type: 'string' },
      seed: { type: 'string', default: '0' },
    },
  });
  const src = values.src!;
  const out = values.out ?? path.join(repoRoot(), 'data', 'builtin', 'fashion-mnist');
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  await fsp.mkdir(out, { recursive: true });

  const written: { file: string; sha256: string; bytes: number }[] = [];
  const write = async (name: string, data: Uint8Array) => {
    const gz = gzipDeterministic(data);
    await fsp.writeFile(path.join(out, name), gz);
    written.push({ file: name, sha256: sha256Hex(gz), bytes: gz.length });
  };

  for (const split of SPLITS) {
    const images = await openIdxImages(path.join(src, `${split.prefix}-images-idx3-ubyte.gz`));
    const labels = await readIdxLabels(path.join(src, `${split.prefix}-labels-idx1-ubyte.gz`));
    const size = images.rows * images.cols;
    const all = new Uint8Array(images.count * size);
    let i = 0;
    for await (const rec of images.records()) all.set(rec, size * i++);

    const picked = stratifiedSample(labels, FASHION_MNIST_CLASSES.length, split.perClass, Rng.derive(seed, `builtin/${split.prefix}`));
    const outImages = new Uint8Array(picked.length * size);
    const outLabels = new Uint8Array(picked.length);
    picked.forEach((src, j) => {
      outImages.set(all.subarray(src * size, (src + 1) * size), j * size);
      outLabels[j] = labels[src];
    });
    await write(`${split.prefix}-images-idx3-ubyte.gz`, encodeIdxImages(picked.length, images.rows, images.cols, outImages));
    await write(`${split.prefix}-labels-idx1-ubyte.gz`, encodeIdxLabels(outLabels));
    console.log(`${split.prefix}: ${picked.length} of ${images.count} images (${split.perClass} per class)`);
  }

  await fsp.writeFile(path.join(out, 'LICENSE'), LICENSE);
  await fsp.writeFile(path.join(out, 'README.md'), readme(seed, written));
  for (const w of written) console.log(`${path.join(out, w.file)}  ${w.bytes} bytes`);
}

const LICENSE = `The MIT License (MIT)

Copyright (c) 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
`;

function readme(seed: number, files: { file: string; sha256: string; bytes: number }[]): string {
  return `# Built-in dataset: Fashion-MNIST subset

A small, balanced subset of [Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist)
(Zalando Research; 28×28 greyscale images of clothing in 10 classes), shipped so
that metacurate runs out of the box without a download.

- train: 6,000 images, 600 per class, from the 60,000 training images
- test: 1,000 images, 100 per class, from the 10,000 test images
- classes: ${FASHION_MNIST_CLASSES.join(', ')}

The files are IDX, gzip-compressed, with the upstream names, so any IDX reader
(and \`metacurate ingest data/builtin/fashion-mnist\`) reads them like the full set.

## How it was made

From the four upstream files (Debian package \`dataset-fashion-mnist\`, which
installs them in \`${DEFAULT_SRC}\`):

\`\`\`
npm run build && node dist/scripts/make-builtin.js --src ${DEFAULT_SRC} --seed ${seed}
\`\`\`

For each split and class, the image indices of that class are shuffled with
metacurate's seeded generator (\`Rng.derive(${seed}, 'builtin/<split>')\`, classes
in label order) and the first 600 (train) or 100 (test) kept; the chosen images
keep their original relative order. gzip output has no timestamp, so rerunning
the command gives byte-identical files:

| file | bytes | sha256 |
|---|---|---|
${files.map((f) => `| ${f.file} | ${f.bytes} | ${f.sha256} |`).join('\n')}

For the full dataset, run \`scripts/fetch-fashion-mnist\`.

## Licence

Fashion-MNIST is released under the MIT licence, Copyright (c) 2017 Zalando SE;
see [LICENSE](LICENSE).
`;
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
