import type { JobLogLine, JobView } from '../../domain/schemas/job.js';
import type { Command, CommandContext } from '../command.js';
import { ExitCode } from '../errors.js';
import { describeEnd, exitCodeOf, followToEnd } from '../follow.js';
import { readAll } from '../io.js';
import { jobBodyFrom, readJobFile } from '../job-body.js';
import { StatusLine } from '../status-line.js';
import { onInterrupt } from './interrupt.js';

export const submit: Command = {
  name: 'submit',
  summary: 'Submit a job from flags or a YAML/JSON file (the body of POST /jobs/)',
  usage: [
    'submit --image IMAGE [--command LINE] [options] [--wait]',
    'submit --image IMAGE [options] -- COMMAND [ARG...]',
    'submit -f job.yaml [options] [--wait]',
  ],
  options: {
    file: { type: 'string', short: 'f' },
    image: { type: 'string' },
    command: { type: 'string' },
    name: { type: 'string' },
    gpus: { type: 'string' },
    'gpu-memory': { type: 'string' },
    'gpu-type': { type: 'string' },
    cpu: { type: 'string' },
    memory: { type: 'string' },
    env: { type: 'string', multiple: true, short: 'e' },
    input: { type: 'string' },
    timeout: { type: 'string' },
    priority: { type: 'string' },
    'max-retries': { type: 'string' },
    selector: { type: 'string', multiple: true },
    node: { type: 'string' },
    'max-price': { type: 'string' },
    'webhook-url': { type: 'string' },
    wait: { type: 'boolean', short: 'w' },
  },
  optionHelp: [
    ['-f, --file FILE', "a job as YAML or JSON ('-' for stdin); flags override its fields"],
    ['--image IMAGE', 'docker_image, e.g. pytorch/pytorch:2.4.0'],
    ['--command LINE', "a shell line, run as sh -c LINE (or give the command after '--')"],
    ['--name NAME', 'job_name'],
    ['--gpus N', 'gpu_count: GPUs on one node (default 1 with --gpu-memory, else 0)'],
    ['--gpu-memory SIZE', 'gpu_memory_required on each GPU: MiB, or 24GiB, 512MiB'],
    ['--gpu-type TYPE', "gpu_type: a model ('RTX 4090') or a class ('H100|H200')"],
    ['--cpu N', 'cpu_cores_required (may be fractional)'],
    ['--memory SIZE', 'memory_required (RAM): MiB, or 16GiB'],
    ['-e, --env K=V', 'an environment variable; repeat for more'],
    ['--input JSON', 'input_data: JSON, or @file.json'],
    ['--timeout T', 'timeout_seconds: seconds, or 90m, 12h, 2d'],
    ['--priority N', '0-1000, higher runs first'],
    ['--max-retries N', 'times a failed attempt goes back to the queue'],
    ['--selector K=V', 'node_selector: a label the node must have; repeat for more'],
    ['--node NAME', 'node_name: run only on this node'],
    ['--max-price P', 'max_price_per_hour'],
    ['--webhook-url URL', "POSTed the job's final state"],
    ['-w, --wait', "follow the job: progress, its logs, then exit with the job's exit code"],
  ],
  positionals: { min: 0, max: 0, names: '' },
  rest: true,
  examples: [
    "imagepod submit --image busybox --command 'echo hello' --wait",
    'imagepod submit --image pytorch/pytorch --gpu-memory 24GiB --cpu 4 --memory 16GiB -e EPOCHS=3 -- python train.py',
    'imagepod submit -f job.yaml --priority 10 --wait',
  ],
  async run(ctx) {
    const { flags, rest } = ctx.args;
    const path = flags.string('file');
    const file = path === undefined ? {} : await readJobFile(path, () => readAll(ctx.io.stdin));
    const body = jobBodyFrom(file, flags, rest);
    const client = ctx.client();
    const job = await client.post<JobView>('/jobs/', body);
    if (!flags.bool('wait')) {
      ctx.print(job, () => `${job.id}\n`);
      return 0;
    }
    return waitFor(ctx, job);
  },
};

/**
 * `--wait`: the job's stdout lines to stdout, its stderr and system lines and the live status to
 * stderr (with --json, all log lines to stderr and the ended job as JSON to stdout). Ctrl-C
 * detaches: the job keeps running.
 */
async function waitFor(ctx: CommandContext, job: JobView): Promise<number> {
  const status = new StatusLine(ctx.io.stderr);
  ctx.err(`submitted job ${job.job_name} (${job.id})\n`);
  const write = (line: JobLogLine) => {
    if (line.stream === 'stdout' && !ctx.json) ctx.out(`${line.text}\n`);
    else ctx.err(`${line.text}\n`);
  };
  const controller = new AbortController();
  const interrupted = onInterrupt(() => controller.abort());
  try {
    const ended = await followToEnd(ctx.client(), job.id, status, write, controller.signal);
    status.stop(describeEnd(ended));
    if (ctx.json) ctx.out(`${JSON.stringify(ended, null, 2)}\n`);
    return exitCodeOf(ended);
  } catch (err) {
    if (!interrupted.happened) {
      status.stop();
      throw err;
    }
    status.stop(`detached: job ${job.id} keeps running; follow it with: imagepod logs ${job.id} --follow`);
    return ExitCode.Interrupted;
  } finally {
    interrupted.dispose();
  }
}
