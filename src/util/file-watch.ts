import { type FSWatcher, statSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';

export interface FileWatchOptions {
  /** Events within this long of each other make one check: writers touch a file several times. */
  readonly debounceMs?: number;
  /** A stat of every file this often, for file systems where watching misses changes. */
  readonly pollMs?: number;
}

/**
 * Calls `onChange` when any of `paths` changes: a new inode, size or mtime. It watches each
 * file's directory rather than the file: an atomic replace (write elsewhere, rename over it) and
 * Kubernetes' secret and config-map volumes (a `..data` symlink swapped to a new directory) leave
 * a watch on the old file itself looking at a file nobody uses any more. Polling backs the watch
 * up (network file systems, overlay quirks). Returns a function that stops watching.
 */
export function watchFiles(paths: readonly string[], onChange: () => void, opts: FileWatchOptions = {}): () => void {
  const debounceMs = opts.debounceMs ?? 250;
  const pollMs = opts.pollMs ?? 5000;
  let last = signature(paths);
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;

  const check = () => {
    timer = null;
    if (stopped) return;
    const now = signature(paths);
    if (now === last) return;
    last = now;
    onChange();
  };
  const soon = () => {
    if (timer !== null || stopped) return;
    timer = setTimeout(check, debounceMs);
    timer.unref();
  };

  const watchers: FSWatcher[] = [];
  for (const dir of new Set(paths.map((p) => dirname(p)))) {
    try {
      const w = watch(dir, { persistent: false }, soon);
      // A directory that goes away (unmounted) leaves the poll to notice.
      w.on('error', () => w.close());
      watchers.push(w);
    } catch {
      /* unwatchable (gone, no permission): the poll still runs */
    }
  }
  const poll = setInterval(check, pollMs);
  poll.unref();

  return () => {
    stopped = true;
    clearInterval(poll);
    if (timer !== null) clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}

/** What identifies a file's current content cheaply; stat follows symlinks, so a swapped link counts. */
function signature(paths: readonly string[]): string {
  return paths
    .map((p) => {
      try {
        const s = statSync(p);
        return `${basename(p)}:${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch (err) {
        return `${basename(p)}:${(err as NodeJS.ErrnoException).code ?? 'error'}`;
      }
    })
    .join('|');
}
