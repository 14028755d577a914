/**
 * GPU model names as nvidia-smi prints them ("NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4-80GB")
 * and as people write them ("RTX 4090", "A100") reduce to one family key ("rtx-4090", "a100"),
 * which the node index and the claim rule compare.
 */
const VENDOR_WORDS = new Set(['nvidia', 'geforce', 'tesla', 'quadro']);
/** Words that name a product line and need the next word to mean a model ("RTX 4090", "RTX A6000"). */
const LINE_WORDS = new Set(['rtx', 'gtx', 'titan']);

export function gpuFamily(name: string): string {
  const words = name
    .toLowerCase()
    .split(/[\s\-_/]+/)
    .filter((w) => w !== '' && !VENDOR_WORDS.has(w));
  const first = words[0];
  if (first === undefined) return 'unknown';
  const second = words[1];
  if (LINE_WORDS.has(first) && second !== undefined) return sanitize(`${first}-${second}`);
  return sanitize(first);
}

function sanitize(s: string): string {
  return s.replace(/[^a-z0-9.-]/g, '') || 'unknown';
}

/** A job's gpu_type: one model or a class of models separated by `|` ("H100|H200"). */
export function gpuFamilies(type: string): string[] {
  return [...new Set(type.split('|').map((t) => gpuFamily(t.trim())))];
}
