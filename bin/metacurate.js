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
const code = await cli.main(process.argv);
// Exit only once stdout and stderr have drained: a pipe (`metacurate --json inspect big | wc -c`)
// may still hold output, and process.exit would cut it. The write callback runs after the flush.
const flushed = (stream) => new Promise((resolve) => {
  if (stream.destroyed || !stream.writable) resolve();
  else stream.write('', () => resolve());
});
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
