/** Ctrl-C while following: stop watching (the job is not touched) and let the command say so. */
export function onInterrupt(stop: () => void): { readonly happened: boolean; dispose(): void } {
  const state = { happened: false };
  const handler = () => {
    state.happened = true;
    stop();
  };
  process.once('SIGINT', handler);
  return {
    get happened() {
      return state.happened;
    },
    dispose: () => process.off('SIGINT', handler),
  };
}
