import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import type { RequestHandler, Router } from 'express';
import { ForbiddenError } from '../domain/errors.js';
import { isAdmin } from '../domain/roles.js';
import { principalOf } from './auth.js';

export const BULL_BOARD_PATH = '/admin/queues';

/**
 * Bull Board over the tier queues (and each GPU family's queue once it exists), for admins. It
 * is read-only: a job's status, cost and budget hold move only through the API, so retrying or
 * removing a BullMQ job by hand would leave its record behind.
 */
export function bullBoard(watchQueues: (onQueue: (q: Queue) => void) => void): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  const board = createBullBoard({
    queues: [],
    serverAdapter,
    options: { uiConfig: { boardTitle: 'ImagePod queues', miscLinks: [{ text: 'Dashboard', url: '/' }] } },
  });
  watchQueues((q) => board.addQueue(new BullMQAdapter(q, { readOnlyMode: true, displayName: q.name })));
  return serverAdapter.getRouter() as Router;
}

/** 403 for anyone but an admin; `authenticate` has run before and answered 401 without credentials. */
export const adminsOnly: RequestHandler = (req, _res, next) => {
  next(isAdmin(principalOf(req)) ? undefined : new ForbiddenError('Bull Board is for admins'));
};
