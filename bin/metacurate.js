#!/usr/bin/env node
// The metacurate CLI. The code lives in dist/ (built by `npm run build`, which
// `npm install` runs through the prepare script).
let cli;
try {
  cli = await import('../dist/pipeline/cli.js');
} catch (err) {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist')) {
    process.stderr.write('metacurate: not built yet: run `npm run build` in the metacurate folder first\n');
    process.exit(70);
  }
  throw err;
}
process.exit(await cli.main(process.argv));
