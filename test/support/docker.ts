import type Docker from 'dockerode';
import { inject } from 'vitest';
import { dockerFromHost } from '../../agent/executor/docker.js';

export { TEST_IMAGE } from '../setup/dockerd.js';

/** The test Docker engine (see test/setup/dockerd.ts); a test that needs one fails without it. */
export function testDockerHost(): string {
  const host = inject('dockerHost');
  if (!host) throw new Error(`no Docker engine for the tests: ${inject('dockerProblem')}`);
  return host;
}

export function testDocker(): Docker {
  return dockerFromHost(testDockerHost());
}
