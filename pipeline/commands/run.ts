/** `metacurate run <pipeline.yaml>`: run a pipeline, skipping stages whose output is current. */
import path from 'node:path';
import { loadPipelineConfig } from '../config.js';
import { runPipeline } from '../runner.js';
import { REPORT_MD, formatStageTable } from '../report.js';
import type { RegisterCommand } from './common.js';
import { queueOption, withQueue } from './queue.js';

export const registerRun: RegisterCommand = (program, session) => {
  program
    .command('run')
    .description('Run a pipeline file (YAML or JSON): stages in order, skipping those whose output is current')
    .argument('<pipeline>', 'pipeline file (.yaml, .yml or .json; see schema/pipeline.schema.json)')
    .option('--force', 'rerun every stage even when its output is current')
    .option('--take-over-lock', 'take over the workdir\'s lock when a run on another host holds it (a pod or machine that is gone): only when you know no run is active')
    .addOption(queueOption())
    .addHelpText('after', '\nExamples:\n  metacurate run pipelines/default.yaml\n  metacurate run pipelines/default.yaml --queue redis://queue-host:6379   # with `metacurate worker`s (docs/production.md)')
    .action(async (file: string, flags: { force?: boolean; takeOverLock?: boolean; queue?: string }, cmd) => {
      const config = await loadPipelineConfig(file);
      const ctx = withQueue(session, flags.queue, config.workdir).context(cmd);
      const report = await runPipeline(config, { force: flags.force, takeOverLock: flags.takeOverLock, ctx });
      session.output(cmd, report, () =>
        `pipeline ${report.name}: ${report.seconds.toFixed(1)} s\n\n${formatStageTable(report)}\n\nreport: ${path.relative(process.cwd(), path.join(report.workdir, REPORT_MD))}`,
      );
    });
};
