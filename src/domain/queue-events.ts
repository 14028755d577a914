/**
 * The event the API adds to a tier queue's BullMQ event stream when a job that an agent holds
 * is cancelled. Agents read that stream anyway (to wake up when jobs arrive), so a cancel
 * reaches the owning agent within milliseconds.
 */
export const CANCEL_EVENT = 'imagepod:cancel';
