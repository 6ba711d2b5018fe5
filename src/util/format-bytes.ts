// A byte count for people: 1024-based units, one decimal past bytes (1.5 GiB, 512 B).
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024, i++);
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}
