import type { ExecutionRequest } from './types.js';

/** Input small enough to also pass in IMAGEPOD_INPUT (environments have size limits). */
export const INPUT_ENV_MAX_BYTES = 32 * 1024;

/**
 * The environment every job gets, whatever runs it: its own variables, then ImagePod's, which
 * a job cannot override: where its input is, where to leave results, and the input itself when
 * small.
 */
export function jobEnv(req: ExecutionRequest, paths: { inputFile: string; outputDir: string }): Record<string, string> {
  const input = JSON.stringify(req.inputData ?? null);
  return {
    ...req.env,
    IMAGEPOD_JOB_ID: req.jobId,
    IMAGEPOD_INPUT_FILE: paths.inputFile,
    IMAGEPOD_OUTPUT_DIR: paths.outputDir,
    ...(Buffer.byteLength(input) <= INPUT_ENV_MAX_BYTES ? { IMAGEPOD_INPUT: input } : {}),
  };
}
