/**
 * Writes schema/pipeline.schema.json from the zod schema of pipeline files
 * (pipeline/config.ts). Run after changing a stage's options:
 *   npm run build && node dist/scripts/gen-schema.js
 * test/pipeline/schema.test.ts fails while the committed file is out of date.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { pipelineJsonSchema } from '../pipeline/config.js';

export const SCHEMA_PATH = 'schema/pipeline.schema.json';

/** The file's exact content. */
export function pipelineSchemaText(): string {
  return JSON.stringify(pipelineJsonSchema(), null, 2) + '\n';
}

/** The repository root, from this file's place in the source tree or in dist/. */
function repoRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const up = path.basename(path.dirname(here)) === 'dist' ? '../..' : '..';
  return path.resolve(here, up);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = path.join(repoRoot(), SCHEMA_PATH);
  writeFileSync(file, pipelineSchemaText());
  process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`);
}
