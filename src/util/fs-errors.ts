/** An fs error saying nothing is at the path (ENOENT), or a file stands where a directory would be (ENOTDIR). */
export function isAbsent(e: unknown): boolean {
  const code = typeof e === 'object' && e !== null && 'code' in e ? e.code : undefined;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
