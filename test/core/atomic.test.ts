// writeFileAtomic: the file appears whole or not at all, and the temporaries a
// killed writer left beside it go at the next write, but only provably abandoned
// ones (this host, a dead process).
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileTempName, writeFileAtomic } from '../../core/atomic.js';
import { useTmpDir } from '../helpers/tmp.js';

const tmp = useTmpDir('metacurate-atomic-');

describe('writeFileAtomic', () => {
  it('replaces the file and leaves no temporary', async () => {
    const file = path.join(tmp(), 'report.json');
    await writeFileAtomic(file, 'one');
    await writeFileAtomic(file, 'two');
    expect(await fsp.readFile(file, 'utf8')).toBe('two');
    expect(await fsp.readdir(tmp())).toEqual(['report.json']);
  });

  it('removes what a killed writer left, not a live writer\'s or another host\'s temporary, nor another file\'s', async () => {
    const dir = path.join(tmp(), 'leftovers');
    await fsp.mkdir(dir);
    const file = path.join(dir, 'report.html');
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid!;
    const dead = fileTempName(file, deadPid);
    const live = fileTempName(file, process.pid);
    // The same name with another host's tag: that writer's process may be alive there.
    const ours = path.basename(fileTempName(file, deadPid));
    const tag = ours.slice('.tmp-report.html-'.length, '.tmp-report.html-'.length + 6);
    const otherHost = path.join(dir, ours.replace(`-${tag}-`, `-${tag === 'aaaaaa' ? 'bbbbbb' : 'aaaaaa'}-`));
    const otherFile = fileTempName(path.join(dir, 'report.md'), deadPid);
    for (const f of [dead, live, otherHost, otherFile]) await fsp.writeFile(f, 'partial');
    await writeFileAtomic(file, '<html>');
    const left = (await fsp.readdir(dir)).sort();
    expect(left).toEqual([path.basename(live), path.basename(otherHost), path.basename(otherFile), 'report.html'].sort());
  });

  it('removes its own temporary when the write fails', async () => {
    const dir = path.join(tmp(), 'fails');
    await fsp.mkdir(path.join(dir, 'target.txt'), { recursive: true });
    // The rename onto a directory fails: the temporary must not stay behind.
    await expect(writeFileAtomic(path.join(dir, 'target.txt'), 'x')).rejects.toThrow();
    expect(await fsp.readdir(dir)).toEqual(['target.txt']);
  });
});
