import { readFileSync } from 'node:fs';

/** The package version, recorded in every output's curation.json as `code_version`. */
export const CODE_VERSION: string = (() => {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8'));
      if (pkg.name === 'metacurate') return String(pkg.version);
    } catch {
      // try the next candidate (source tree vs dist/)
    }
  }
  return '0.0.0';
})();
