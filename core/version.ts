import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's root folder and version: one folder up from the sources, two from dist/. */
const PACKAGE: { root?: string; version: string } = (() => {
  for (const rel of ['../', '../../']) {
    const root = new URL(rel, import.meta.url);
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));
      if (pkg.name === 'metacurate') return { root: fileURLToPath(root), version: String(pkg.version) };
    } catch {
      // try the next candidate (source tree vs dist/)
    }
  }
  return { version: '0.0.0' };
})();

/** The package version, recorded in every output's curation.json as `code_version`. */
export const CODE_VERSION: string = PACKAGE.version;

/**
 * Where a file that ships with the package is on this machine (for error hints:
 * `schema/pipeline.schema.json` means nothing to someone who installed the
 * package), or undefined when it is not there.
 */
export function packageFile(rel: string): string | undefined {
  if (!PACKAGE.root) return undefined;
  const p = path.join(PACKAGE.root, rel);
  return existsSync(p) ? p : undefined;
}

/** ` (see /abs/path/doc.md)` for a page of the package's docs that is there, else nothing. */
export function docsRef(rel: string): string {
  const p = packageFile(rel);
  return p ? ` (see ${p})` : '';
}
